"""Training on real scikit-learn datasets and mixed in-memory data: metrics, classes, the
canonical frame at predict time, skops storage and the refusals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from modelserve.core.errors import ValidationFailed
from modelserve.registry.schemas import FeatureType
from modelserve.training.pipeline import (
    SKOPS_TRUSTED_TYPES,
    Algorithm,
    TrainedModel,
    build_pipeline,
    train,
)
from modelserve.training.schema_inference import canonical_frame

# XGBoost classifiers take labels 0..n-1 only: it has its own tests (test_training_options).
CLASSIFIERS: list[Algorithm] = ["logistic", "random_forest", "gradient_boosting", "lightgbm"]
REGRESSORS: list[Algorithm] = [
    "linear",
    "random_forest",
    "gradient_boosting",
    "xgboost",
    "lightgbm",
]
CLASSIFICATION_METRICS = {"accuracy", "balanced_accuracy", "f1_macro", "log_loss"}
REGRESSION_METRICS = {"r2", "rmse", "mae"}
COMMON_KEYS = {"task", "algorithm", "target", "cv_folds", "n_rows", "n_features", "dropped_rows"}


def iris() -> pd.DataFrame:
    data = load_iris(as_frame=True)
    frame: pd.DataFrame = data.frame.copy()
    frame["target"] = np.asarray(data.target_names)[data.target]
    return frame


def mixed_frame(n: int = 80) -> pd.DataFrame:
    """Numbers, integers, 0/1 and yes/no booleans, a category, free text and gaps, with a
    string label that depends on them."""
    rng = np.random.default_rng(3)
    age = rng.integers(18, 80, n)
    income = rng.normal(50.0, 10.0, n)
    member = rng.integers(0, 2, n)
    smoker = rng.integers(0, 2, n)
    colour_idx = rng.integers(0, 3, n)
    score = (age - 50) / 15 + (income - 50) / 10 + member - smoker + colour_idx
    income_gappy = income.copy()
    income_gappy[::9] = np.nan
    colour: list[str | None] = [["red", "green", "blue"][i] for i in colour_idx]
    colour[5] = None
    return pd.DataFrame(
        {
            "age": age,
            "income": income_gappy,
            "member": member,
            "smoker": np.where(smoker == 1, "yes", "no"),
            "colour": colour,
            "comment": [f"customer said thing {i}" for i in range(n)],
            "amount": score * 10 + 100,
            "label": np.where(score > np.median(score), "high", "low"),
        }
    )


def serving_frame(instances: list[dict[str, Any]], model: TrainedModel) -> pd.DataFrame:
    """The frame the inference server builds: one numpy array per feature, floats for numbers
    and booleans, objects for categories."""
    columns: dict[str, np.ndarray[Any, Any]] = {}
    for feature in model.input_schema.features:
        values = [row.get(feature.name) for row in instances]
        if feature.type is FeatureType.CATEGORY:
            columns[feature.name] = np.array(values, dtype=object)
        else:
            floats = [np.nan if v is None else float(v) for v in values]
            columns[feature.name] = np.array(floats, dtype=np.float64)
    return pd.DataFrame(columns, columns=model.input_schema.names)


@pytest.mark.parametrize("algorithm", CLASSIFIERS)
def test_iris_classification(algorithm: Algorithm) -> None:
    calls: list[tuple[int, int]] = []
    model = train(
        iris(), "target", algorithm=algorithm, folds=3, on_fold=lambda i, k: calls.append((i, k))
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert set(model.metrics) == COMMON_KEYS | CLASSIFICATION_METRICS | {"roc_auc_ovr"}
    assert model.metrics["task"] == "classification"
    assert model.metrics["algorithm"] == algorithm
    assert model.metrics["cv_folds"] == 3
    assert model.metrics["n_rows"] == 150
    assert model.metrics["n_features"] == 4
    assert model.metrics["dropped_rows"] == 0
    assert model.metrics["accuracy"]["mean"] > 0.8
    assert 0 <= model.metrics["accuracy"]["std"] < 0.2
    assert model.metrics["log_loss"]["mean"] < 1.0
    assert model.output.task == "classification"
    assert model.output.classes == ["setosa", "versicolor", "virginica"]
    assert model.output.probabilities
    assert model.ignored_columns == {}
    frame = canonical_frame(iris(), model.input_schema)
    assert (model.estimator.predict(frame) == iris()["target"]).mean() > 0.9


@pytest.mark.parametrize("algorithm", REGRESSORS)
def test_diabetes_regression(algorithm: Algorithm) -> None:
    model = train(load_diabetes(as_frame=True).frame, "target", algorithm=algorithm, folds=3)
    assert set(model.metrics) == COMMON_KEYS | REGRESSION_METRICS
    assert model.metrics["task"] == "regression"
    assert model.metrics["n_features"] == 10
    assert model.metrics["r2"]["mean"] > 0.2
    assert 0 < model.metrics["mae"]["mean"] <= model.metrics["rmse"]["mean"]
    assert model.output.task == "regression"
    assert model.output.classes is None
    assert not model.output.probabilities


def test_breast_cancer_binary_has_roc_auc_and_int_classes() -> None:
    model = train(load_breast_cancer(as_frame=True).frame, "target", algorithm="logistic")
    assert model.metrics["algorithm"] == "logistic"
    assert model.metrics["cv_folds"] == 5
    assert model.metrics["roc_auc"]["mean"] > 0.95
    assert model.output.classes == [0, 1]
    assert all(type(c) is int for c in model.output.classes)


@pytest.mark.parametrize("algorithm", CLASSIFIERS)
def test_mixed_data_trains_and_serves(algorithm: Algorithm) -> None:
    model = train(mixed_frame(), "label", algorithm=algorithm, folds=4)
    assert "comment" in model.ignored_columns
    assert model.metrics["n_features"] == 6
    assert model.metrics["accuracy"]["mean"] > 0.6
    assert model.output.classes == ["high", "low"]
    instances: list[dict[str, Any]] = [
        {
            "age": 30,
            "income": 40.0,
            "member": True,
            "smoker": False,
            "colour": "red",
            "amount": 90.0,
        },
        {
            "age": 70,
            "income": None,
            "member": False,
            "smoker": True,
            "colour": None,
            "amount": 120.0,
        },
        {
            "age": 45,
            "income": 55.0,
            "member": True,
            "smoker": True,
            "colour": "purple",
            "amount": 101.0,
        },
    ]
    frame = serving_frame(instances, model)
    predictions = model.estimator.predict(frame).tolist()
    assert set(predictions) <= {"high", "low"}
    proba = model.estimator.predict_proba(frame)
    assert np.allclose(proba.sum(axis=1), 1.0)


def test_serving_frame_matches_canonical_frame() -> None:
    data = mixed_frame()
    model = train(data, "label", algorithm="logistic", folds=3)
    canonical = canonical_frame(data, model.input_schema)
    instances: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = canonical.to_dict(orient="records")  # type: ignore[assignment]
    for record in records:
        row: dict[str, Any] = {}
        for feature in model.input_schema.features:
            value = record[feature.name]
            missing = value is None or (isinstance(value, float) and np.isnan(value))
            if missing:
                row[feature.name] = None
            elif feature.type is FeatureType.BOOLEAN:
                row[feature.name] = value == 1.0
            else:
                row[feature.name] = value
        instances.append(row)
    served = serving_frame(instances, model)
    expected = model.estimator.predict_proba(canonical)
    assert np.allclose(model.estimator.predict_proba(served), expected)


def test_missing_targets_are_dropped_and_integer_labels_kept() -> None:
    frame = load_breast_cancer(as_frame=True).frame.iloc[:120].copy()
    frame["target"] = frame["target"].astype(float)
    frame.loc[[0, 7, 9], "target"] = np.nan
    model = train(frame, "target", algorithm="logistic", folds=3)
    assert model.metrics["dropped_rows"] == 3
    assert model.metrics["n_rows"] == 117
    assert model.metrics["task"] == "classification"
    assert model.output.classes == [0, 1]


def test_folds_shrink_to_the_smallest_class() -> None:
    frame = iris().iloc[list(range(50)) + list(range(50, 53))]
    model = train(frame, "target", algorithm="logistic", folds=5)
    assert model.output.classes == ["setosa", "versicolor"]
    assert model.metrics["cv_folds"] == 3


def test_explicit_classification_of_floats_and_boolean_labels() -> None:
    frame = iris()
    frame["is_setosa"] = frame.pop("target") == "setosa"
    model = train(frame, "is_setosa", algorithm="logistic", folds=3)
    assert model.output.classes == [False, True]
    assert model.metrics["roc_auc"]["mean"] > 0.95


@pytest.mark.parametrize("algorithm", ["logistic", "random_forest", "gradient_boosting"])
def test_pipelines_store_with_skops(algorithm: Algorithm) -> None:
    data = mixed_frame(40)
    model = train(data, "label", algorithm=algorithm, folds=2)
    payload = sio.dumps(model.estimator)
    untrusted = sio.get_untrusted_types(data=payload)
    # Only numpy dtypes and tree node storage, which skops never trusts by default.
    assert set(untrusted) <= set(SKOPS_TRUSTED_TYPES)
    loaded = sio.loads(payload, trusted=untrusted)
    frame = canonical_frame(data, model.input_schema)
    assert np.allclose(loaded.predict_proba(frame), model.estimator.predict_proba(frame))


def test_build_pipeline_skips_absent_groups() -> None:
    model = train(iris(), "target", algorithm="logistic", folds=2)
    pipeline = build_pipeline(model.input_schema, "classification", "gradient_boosting")
    names = [name for name, _, _ in pipeline.named_steps["preprocess"].transformers]
    assert names == ["numeric"]


def test_missing_target_column() -> None:
    with pytest.raises(ValidationFailed) as caught:
        train(iris(), "species")
    assert "sepal length (cm)" in caught.value.details["available_columns"]


def test_single_class() -> None:
    with pytest.raises(ValidationFailed, match="single class"):
        train(iris().iloc[:50], "target")


def test_class_with_one_row() -> None:
    with pytest.raises(ValidationFailed) as caught:
        train(iris().iloc[:51], "target")
    assert caught.value.details["classes_with_one_row"] == ["versicolor"]


def test_too_few_rows() -> None:
    frame = iris().iloc[[0, 1, 2, 3, 50, 51, 52, 53, 100]]
    with pytest.raises(ValidationFailed, match="At least 10 rows"):
        train(frame, "target")


def test_empty_data() -> None:
    with pytest.raises(ValidationFailed, match="no rows"):
        train(iris().iloc[:0], "target")


def test_logistic_regression_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="classification only"):
        train(load_diabetes(as_frame=True).frame, "target", algorithm="logistic")


def test_regression_needs_a_numeric_target() -> None:
    with pytest.raises(ValidationFailed, match="numeric target"):
        train(iris(), "target", task="regression")


def test_unknown_algorithm_and_bad_folds() -> None:
    with pytest.raises(ValidationFailed) as caught:
        train(iris(), "target", algorithm="svm")  # type: ignore[arg-type]
    assert "gradient_boosting" in caught.value.details["allowed"]
    with pytest.raises(ValidationFailed, match="2 folds"):
        train(iris(), "target", folds=1)
