"""The numpy form of a pipeline's ColumnTransformer: exactly the pipeline's answers where it is
used, and not used where it cannot be shown to be the same."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from factories import IRIS_FEATURES, iris_frame, mixed_csv, register
from fastapi.testclient import TestClient
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from modelserve.inference.column_blocks import (
    VERIFICATION_ROWS,
    compile_blocks,
    verified_blocks,
    verified_nameless,
)
from modelserve.inference.predictor import Predictor
from modelserve.inference.validation import CompiledValidator
from modelserve.registry.loaders import dump_skops
from modelserve.registry.probe import describe_output, sample_instances
from modelserve.registry.schemas import InputSchema
from modelserve.training.pipeline import TrainedModel, train


def verified(estimator: Any, schema: InputSchema) -> Any:
    """The blocks the server would use, verified on the sample the server draws."""
    return verified_blocks(estimator, schema, sample_instances(schema, VERIFICATION_ROWS))


@pytest.fixture(scope="module")
def churn_frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    frame = pd.read_csv(mixed_csv(tmp_path_factory.mktemp("churn") / "churn.csv"))
    frame.loc[::11, "region"] = None
    return frame


def trained(frame: pd.DataFrame, algorithm: str) -> TrainedModel:
    return train(frame, "churn", algorithm=algorithm, folds=2)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ["logistic", "random_forest", "gradient_boosting"])
def test_trained_pipelines_answer_exactly_as_scikit_learn(
    churn_frame: pd.DataFrame, algorithm: str
) -> None:
    model = trained(churn_frame, algorithm)
    blocks = verified(model.estimator, model.input_schema)
    assert blocks is not None
    instances = sample_instances(model.input_schema, 500, seed=7)
    batch = CompiledValidator(model.input_schema, max_rows=500).validate({"instances": instances})
    fast = Predictor(model.estimator, model.input_schema, model.output, blocks=blocks)
    plain = Predictor(model.estimator, model.input_schema, model.output)
    assert fast.predict(batch) == plain.predict(batch)
    frame = pd.DataFrame(batch.columns, columns=model.input_schema.names)
    assert fast.predict(batch).predictions == model.estimator.predict(frame).tolist()


def test_the_served_estimator_is_left_as_it_was(churn_frame: pd.DataFrame) -> None:
    model = trained(churn_frame, "logistic")
    assert verified(model.estimator, model.input_schema) is not None
    numeric = model.estimator[0].named_transformers_["numeric"]
    assert list(numeric.feature_names_in_) == ["income", "age"]
    assert list(model.estimator.feature_names_in_) == model.input_schema.names


def iris_schema_model() -> InputSchema:
    return InputSchema.model_validate(
        {"features": [{"name": n, "type": "number"} for n in IRIS_FEATURES]}
    )


def fitted(preprocess: Any, *, frame: bool = True) -> Pipeline:
    data = iris_frame()
    x: Any = data[IRIS_FEATURES] if frame else data[IRIS_FEATURES].to_numpy()
    pipeline = Pipeline([("pre", preprocess), ("model", LogisticRegression(max_iter=500))])
    return pipeline.fit(x, data["species"])


@pytest.mark.parametrize(
    "pipeline",
    [
        pytest.param(
            lambda: fitted(ColumnTransformer([("s", StandardScaler(), [0, 1, 2, 3])]), frame=False),
            id="integer-columns",
        ),
        pytest.param(
            lambda: fitted(
                ColumnTransformer(
                    [("inner", ColumnTransformer([("s", StandardScaler(), [0])]), IRIS_FEATURES)]
                )
            ),
            id="nested-column-transformer",
        ),
        pytest.param(
            lambda: fitted(StandardScaler()),
            id="no-column-transformer",
        ),
    ],
)
def test_structures_it_cannot_reproduce_run_as_they_are(pipeline: Any) -> None:
    estimator = pipeline()
    assert verified(estimator, iris_schema_model()) is None


def test_a_transformer_that_needs_its_dataframe_fails_verification() -> None:
    # Reads a column by name: fine on the DataFrame, wrong (an error) on a matrix. Verification
    # catches it, and the pipeline runs as it is.
    def first_by_name(x: Any) -> Any:
        return np.asarray(x["sepal_length"]).reshape(-1, 1)

    pre = ColumnTransformer([("f", FunctionTransformer(first_by_name), IRIS_FEATURES)])
    estimator = fitted(pre)
    assert compile_blocks(estimator[0], IRIS_FEATURES) is not None
    assert verified(estimator, iris_schema_model()) is None


def test_pandas_output_is_not_reproduced() -> None:
    pre = ColumnTransformer([("s", StandardScaler(), IRIS_FEATURES)]).set_output(transform="pandas")
    assert verified(fitted(pre), iris_schema_model()) is None


def test_served_answers_match_scikit_learn_over_http(
    client: TestClient, churn_frame: pd.DataFrame
) -> None:
    model = trained(churn_frame, "gradient_boosting")
    schema = model.input_schema.model_dump(mode="json")
    assert register(client, "churn", dump_skops(model.estimator), schema).status_code == 201
    instances = sample_instances(model.input_schema, 60, seed=3)
    answer = client.post("/v1/models/churn/predict", json={"instances": instances}).json()
    batch = CompiledValidator(model.input_schema, max_rows=60).validate({"instances": instances})
    frame = pd.DataFrame(batch.columns, columns=model.input_schema.names)
    assert answer["predictions"] == model.estimator.predict(frame).tolist()
    expected = model.estimator.predict_proba(frame)
    labels = [str(c) for c in describe_output(model.estimator, model.input_schema).classes or []]
    got = np.array([[row[label] for label in labels] for row in answer["probabilities"]])
    np.testing.assert_array_equal(got, expected)


def nameless(estimator: Any, schema: InputSchema) -> Any:
    """The matrix-taking copy the server would use, verified on the sample it draws."""
    return verified_nameless(estimator, schema, sample_instances(schema, VERIFICATION_ROWS))


@pytest.mark.parametrize(
    "estimator",
    [
        pytest.param(lambda: fitted(StandardScaler()), id="scaler-logistic"),
        pytest.param(
            lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(
                iris_frame()[IRIS_FEATURES], iris_frame()["species"]
            ),
            id="hgb",
        ),
    ],
)
def test_a_dataframe_fitted_numeric_model_is_served_from_the_matrix_bit_for_bit(
    client: TestClient, estimator: Any
) -> None:
    model = estimator()
    schema = iris_schema_model()
    copy = nameless(model, schema)
    assert copy is not None
    assert not hasattr(copy, "feature_names_in_")
    assert list(model.feature_names_in_) == IRIS_FEATURES  # the original is left as it was
    assert (
        register(client, "iris", dump_skops(model), schema.model_dump(mode="json")).status_code
        == 201
    )
    instances = sample_instances(schema, 80, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names" either
        answer = client.post("/v1/models/iris/predict", json={"instances": instances})
    assert answer.status_code == 200, answer.text
    frame = pd.DataFrame(instances)[IRIS_FEATURES].astype(np.float64)
    assert answer.json()["predictions"] == model.predict(frame).tolist()
    labels = [str(c) for c in model.classes_]
    got = np.array([[row[label] for label in labels] for row in answer.json()["probabilities"]])
    np.testing.assert_array_equal(got, model.predict_proba(frame))


def test_a_model_whose_names_are_not_the_schema_order_keeps_its_dataframe() -> None:
    schema = InputSchema.model_validate(
        {"features": [{"name": n, "type": "number"} for n in reversed(IRIS_FEATURES)]}
    )
    assert nameless(fitted(StandardScaler()), schema) is None
    assert nameless(fitted(StandardScaler(), frame=False), iris_schema_model()) is None


def test_a_step_that_reads_columns_by_name_keeps_its_dataframe() -> None:
    def by_name(x: Any) -> Any:
        return np.asarray(x[IRIS_FEATURES]) * 2.0

    assert nameless(fitted(FunctionTransformer(by_name)), iris_schema_model()) is None
