"""Training options through the Python API: columns, hyperparameters, search, XGBoost and
LightGBM, the algorithm/task pairing, schema inference's numbers and profiles, and a user's
schema merged in (ours or the book's format)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from modelserve.core.errors import ValidationFailed
from modelserve.registry.schemas import FeatureType, InputSchema, parse_schema_document
from modelserve.training.estimators import parse_param, parse_params
from modelserve.training.pipeline import train
from modelserve.training.schema_inference import canonical_frame


def cancer(rows: int = 120) -> pd.DataFrame:
    frame: pd.DataFrame = load_breast_cancer(as_frame=True).frame
    return frame.sample(n=rows, random_state=0).reset_index(drop=True)


def clinical(rows: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    age = rng.integers(40, 96, rows)
    flag = rng.integers(0, 2, rows)
    return pd.DataFrame(
        {
            "age": age,
            "flag": flag,
            "group": rng.choice(["a", "b", "c"], rows, p=[0.5, 0.3, 0.2]),
            "y": ((age > 65) ^ (flag == 1)).astype(int),
        }
    )


def test_features_and_drop_select_columns() -> None:
    data = cancer()
    chosen = ["mean radius", "mean texture", "worst area"]
    small = {"params": {"n_estimators": 10}, "folds": 2}
    model = train(data, "target", features=chosen, **small)
    assert model.input_schema.names == chosen
    dropped = train(data, "target", drop=["mean radius", "mean area"], **small)
    assert len(dropped.input_schema.features) == 28
    assert "mean radius" not in dropped.input_schema.names
    both = train(data, "target", features=chosen, drop=["mean texture"], **small)
    assert both.input_schema.names == ["mean radius", "worst area"]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"features": ["nope"]}, "Unknown column"),
        ({"drop": ["target"]}, "cannot be selected"),
        ({"features": ["mean radius", "mean radius"]}, "selected twice"),
    ],
)
def test_bad_column_selection(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        train(cancer(), "target", folds=3, **options)
    assert fragment in caught.value.message


def test_a_selected_column_inference_cannot_use_is_an_error() -> None:
    data = clinical()
    data["note"] = [f"free text {i}" for i in range(len(data))]
    with pytest.raises(ValidationFailed) as caught:
        train(data, "y", features=["age", "note"], folds=3)
    assert "note" in caught.value.details["columns"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n_estimators=200", ("n_estimators", 200)),
        ("learning_rate=0.05", ("learning_rate", 0.05)),
        ("bootstrap=False", ("bootstrap", False)),
        ("max_depth=None", ("max_depth", None)),
        ("max_features=sqrt", ("max_features", "sqrt")),
        ("C = 1e-2", ("C", 0.01)),
    ],
)
def test_params_are_typed(text: str, expected: tuple[str, Any]) -> None:
    assert parse_param(text) == expected
    assert type(parse_param(text)[1]) is type(expected[1])


@pytest.mark.parametrize("texts", [["depth"], ["=3"], ["a=1", "a=2"]])
def test_malformed_params(texts: list[str]) -> None:
    with pytest.raises(ValidationFailed):
        parse_params(texts)


def test_params_reach_the_estimator_and_unknown_ones_list_the_valid() -> None:
    params = {"n_estimators": 7, "max_depth": 2}
    model = train(cancer(), "target", params=params, folds=3)
    estimator = model.estimator.named_steps["model"]
    assert (estimator.n_estimators, estimator.max_depth) == (7, 2)
    assert model.metrics["params"] == params
    with pytest.raises(ValidationFailed) as caught:
        train(cancer(), "target", params={"depth": 2}, folds=3)
    assert caught.value.details["unknown"] == ["depth"]
    assert "max_depth" in caught.value.details["valid"]
    with pytest.raises(ValidationFailed) as refused:
        train(cancer(), "target", params={"max_depth": "deep"}, folds=3)
    assert "could not be trained" in refused.value.message


def test_search_ranks_candidates_and_keeps_the_best() -> None:
    seen: list[tuple[int, int]] = []
    model = train(
        cancer(),
        "target",
        params={"n_estimators": 10},
        search=3,
        folds=3,
        on_candidate=lambda i, n: seen.append((i, n)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]
    scores = [c.score for c in model.search]
    assert scores == sorted(scores, reverse=True)
    best = model.search[0]
    assert "n_estimators" not in best.params  # fixed, so not searched
    assert model.metrics["params"] == {"n_estimators": 10, **best.params}
    assert model.metrics["roc_auc"]["mean"] == pytest.approx(best.score)
    assert model.metrics["search"] == {"candidates": 3, "ranked_by": "roc_auc"}
    assert model.estimator.named_steps["model"].n_estimators == 10


def test_search_ranks_regression_by_r2_and_multiclass_by_log_loss() -> None:
    diabetes = load_diabetes(as_frame=True).frame.iloc[:120]
    regression = train(diabetes, "target", algorithm="linear", search=2, folds=3)
    assert regression.metrics["search"]["ranked_by"] == "r2"
    assert {"r2", "mae"} <= set(regression.metrics)
    iris = load_iris(as_frame=True).frame
    multiclass = train(iris, "target", algorithm="logistic", search=2, folds=3)
    assert multiclass.metrics["search"]["ranked_by"] == "log_loss"
    losses = [c.score for c in multiclass.search]
    assert losses == sorted(losses)


def test_linear_on_classification_is_refused_and_logistic_on_regression() -> None:
    with pytest.raises(ValidationFailed) as caught:
        train(cancer(), "target", algorithm="linear", folds=3)
    assert "use 'logistic'" in caught.value.message
    with pytest.raises(ValidationFailed):
        train(load_diabetes(as_frame=True).frame, "target", algorithm="logistic")


def test_xgboost_and_lightgbm_train_classifiers_and_regressors() -> None:
    for algorithm in ("xgboost", "lightgbm"):
        model = train(cancer(), "target", algorithm=algorithm, folds=3)  # type: ignore[arg-type]
        assert model.metrics["algorithm"] == algorithm
        assert model.metrics["roc_auc"]["mean"] > 0.9
        assert model.output.classes == [0, 1]
        diabetes = load_diabetes(as_frame=True).frame.iloc[:150]
        regressor = train(diabetes, "target", algorithm=algorithm, folds=3)  # type: ignore[arg-type]
        assert regressor.metrics["r2"]["mean"] > 0.0


def test_xgboost_refuses_text_labels_with_the_way_out() -> None:
    data = cancer()
    data["target"] = np.where(data["target"] == 1, "benign", "malignant")
    with pytest.raises(ValidationFailed) as caught:
        train(data, "target", algorithm="xgboost", folds=3)
    assert "lightgbm" in caught.value.message


def test_inferred_schema_keeps_ranges_and_frequencies() -> None:
    data = clinical()
    model = train(data, "y", folds=3)
    features = {f.name: f for f in model.input_schema.features}
    age = features["age"]
    assert age.type is FeatureType.NUMBER  # integers in the CSV, but 35.5 is a valid age
    assert age.observed is not None
    assert (age.observed.min, age.observed.max) == (data["age"].min(), data["age"].max())
    assert (age.minimum, age.maximum) == (None, None)  # soft range only
    flag = features["flag"]
    assert flag.type is FeatureType.BOOLEAN
    assert flag.observed is not None
    assert flag.observed.frequencies == {
        "false": int((data["flag"] == 0).sum()),
        "true": int((data["flag"] == 1).sum()),
    }
    group = features["group"]
    assert group.observed is not None
    assert group.observed.frequencies == data["group"].value_counts().sort_index().to_dict()


def test_overrides_merge_into_the_inferred_schema() -> None:
    data = clinical()
    overrides = {
        "features": [
            {"name": "age", "type": "integer", "minimum": 18, "maximum": 120},
            {"name": "group", "description": "study arm"},
        ]
    }
    model = train(data, "y", overrides=overrides, folds=3)
    features = {f.name: f for f in model.input_schema.features}
    age = features["age"]
    assert (age.type, age.minimum, age.maximum) == (FeatureType.INTEGER, 18, 120)
    assert age.observed is not None
    assert age.observed.min == data["age"].min()
    assert features["group"].categories == ["a", "b", "c"]
    assert features["group"].description == "study arm"
    assert features["flag"].type is FeatureType.BOOLEAN


def test_book_format_overrides_and_bad_overrides() -> None:
    data = clinical()
    book = {"input_schema": {"columns": [{"name": "flag", "type": "numeric"}]}}
    model = train(data, "y", overrides=book, folds=3)
    flag = next(f for f in model.input_schema.features if f.name == "flag")
    assert flag.type is FeatureType.NUMBER
    assert flag.observed is not None
    assert (flag.observed.min, flag.observed.max) == (0, 1)
    for bad, fragment in (
        ({"features": [{"name": "weight", "minimum": 0}]}, "does not have"),
        ({"features": [{"name": "age", "minimum": 50}]}, "break the schema's limits"),
        ({"features": [{"name": "age", "minimum": 9, "maximum": 1}]}, "do not fit"),
        ({"columns": "age"}, "A schema file holds"),
    ):
        with pytest.raises(ValidationFailed) as caught:
            train(data, "y", overrides=bad, folds=3)
        assert fragment in caught.value.message


def test_integer_override_refuses_fractional_training_values() -> None:
    data = clinical()
    data["age"] = data["age"] + 0.5
    with pytest.raises(ValidationFailed) as caught:
        train(data, "y", overrides={"features": [{"name": "age", "type": "integer"}]}, folds=3)
    assert caught.value.details[0]["feature"] == "age"


def test_the_book_schema_format_parses_as_is() -> None:
    schema = parse_schema_document(
        {
            "input_schema": {
                "columns": [
                    {"name": "age", "type": "numeric"},
                    {"name": "anaemia", "type": "boolean"},
                ]
            }
        }
    )
    assert schema == InputSchema.model_validate(
        {"features": [{"name": "age", "type": "number"}, {"name": "anaemia", "type": "boolean"}]}
    )
    with pytest.raises(ValueError, match="type"):
        parse_schema_document({"columns": [{"name": "age", "type": "text"}]})


def test_canonical_frame_of_a_profiled_schema_is_unchanged() -> None:
    data = clinical()
    model = train(data, "y", folds=3)
    frame = canonical_frame(data, model.input_schema)
    assert np.allclose(model.estimator.predict_proba(frame).sum(axis=1), 1.0)
