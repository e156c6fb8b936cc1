"""ONNX twins: made and verified at registration, served through ONNX Runtime when a model's
runtime is onnx, with scikit-learn's answers; models that cannot convert still register and serve.

Real models trained here, real conversions, both database backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from conftest import PRODUCT_DEFAULT_RUNTIME, ClientFactory
from factories import IRIS_FEATURES, iris_frame, iris_instance, iris_schema, mixed_csv, register
from fastapi.testclient import TestClient
from sklearn.datasets import load_diabetes
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.neighbors import NearestCentroid
from sqlalchemy import select, update
from typer.testing import CliRunner

from modelserve.cli.main import app as cli_app
from modelserve.config import Settings
from modelserve.core.db import Database
from modelserve.lifecycle.routing import Target
from modelserve.registry.loaders import dump_skops
from modelserve.registry.models import OnnxTwin
from modelserve.registry.onnx import TOLERANCE, attempt_twin, make_twin
from modelserve.registry.probe import describe_output, sample_instances
from modelserve.registry.schemas import InputSchema
from modelserve.registry.service import sha256_hex
from modelserve.training.pipeline import Algorithm, TrainedModel, train


def iris_xy() -> tuple[np.ndarray[Any, Any], pd.Series[Any]]:
    frame = iris_frame()
    return frame[IRIS_FEATURES].to_numpy(), frame["species"]


def churn_model(tmp_path: Path, algorithm: Algorithm) -> TrainedModel:
    """The churn pipeline as ``modelserve train`` builds it, with some regions missing so the
    category is nullable."""
    frame = pd.read_csv(mixed_csv(tmp_path / "churn.csv"))
    frame.loc[::11, "region"] = None
    return train(frame, "churn", algorithm=algorithm, folds=2)


def churn_instances() -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    rows = []
    for i in range(60):
        rows.append(
            {
                "income": None if i % 9 == 0 else round(float(rng.normal(50_000, 20_000)), 2),
                "age": int(rng.integers(18, 80)),
                "member": bool(i % 2),
                "region": None if i % 7 == 0 else ["east", "north", "south"][i % 3],
            }
        )
    return rows


def predict(client: TestClient, model: str, instances: list[dict[str, Any]]) -> Any:
    response = client.post(f"/v1/models/{model}/predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    return response.json()


def set_runtime(client: TestClient, model: str, runtime: str) -> None:
    response = client.put(f"/v1/models/{model}/serving", json={"runtime": runtime})
    assert response.status_code == 200, response.text


def served_runtime(client: TestClient, model: str) -> str:
    """What runs the model's default version in this process right now."""
    inference = client.app.state.modelserve.inference  # type: ignore[attr-defined]
    return str(inference.load(inference.resolve(Target(model))).runtime)


def assert_same_answers(sklearn: Any, onnx: Any) -> None:
    assert onnx["predictions"] == sklearn["predictions"]
    if "probabilities" in sklearn:
        assert len(onnx["probabilities"]) == len(sklearn["probabilities"])
        for got, want in zip(onnx["probabilities"], sklearn["probabilities"], strict=True):
            assert got.keys() == want.keys()
            assert max(abs(got[k] - want[k]) for k in want) <= TOLERANCE


def test_iris_logistic_gets_a_verified_twin(client: TestClient, db: Database) -> None:
    response = register(client, "iris", dump_skops(fit_iris_pipeline()), iris_schema())
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["onnx_unavailable_reason"] is None
    twin = version["onnx"]
    assert twin is not None
    assert 0 <= twin["max_abs_diff"] <= TOLERANCE
    assert twin["size_bytes"] > 0
    shown = client.get("/v1/models/iris/versions/1").json()
    assert shown["onnx"] == twin
    assert shown["onnx_unavailable_reason"] is None
    assert client.get("/v1/models/iris").json()["versions"][0]["onnx"] == twin
    with db.sessions() as session:
        row = session.scalars(select(OnnxTwin)).one()
        assert sha256_hex(row.content) == row.sha256 == twin["sha256"]
        assert len(row.content) == twin["size_bytes"]


def fit_iris_pipeline() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = iris_xy()
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)


def test_runtime_switch_takes_effect_on_the_next_request(client: TestClient) -> None:
    register(client, "iris", dump_skops(fit_iris_pipeline()), iris_schema(), runtime="sklearn")
    instances = [iris_instance(i) for i in range(0, 150, 7)]
    sklearn = predict(client, "iris", instances)
    assert served_runtime(client, "iris") == "sklearn"
    set_runtime(client, "iris", "onnx")
    assert served_runtime(client, "iris") == "onnx"
    assert_same_answers(sklearn, predict(client, "iris", instances))
    set_runtime(client, "iris", "sklearn")
    assert served_runtime(client, "iris") == "sklearn"
    again = predict(client, "iris", instances)
    assert (again["predictions"], again["probabilities"]) == (
        sklearn["predictions"],
        sklearn["probabilities"],
    )
    # The log records both runtimes' answers alike.
    logged = client.get("/v1/predictions", params={"model": "iris", "limit": 3}).json()["data"]
    assert [row["status"] for row in logged] == ["ok", "ok", "ok"]


@pytest.mark.parametrize("algorithm", ["logistic", "gradient_boosting"])
def test_trained_mixed_pipeline_answers_alike_on_onnx(
    client: TestClient, tmp_path: Path, algorithm: Algorithm
) -> None:
    trained = churn_model(tmp_path, algorithm)
    schema = trained.input_schema.model_dump(mode="json")
    assert {f["name"]: f["nullable"] for f in schema["features"]}["region"] is True
    response = register(client, "churn", dump_skops(trained.estimator), schema, runtime="sklearn")
    assert response.status_code == 201, response.text
    # Training's pipelines (imputers, scaling, one-hot categories) convert; trees in single
    # precision, whose probabilities still match within the tolerance.
    assert response.json()["onnx"] is not None, response.json()["onnx_unavailable_reason"]
    assert response.json()["onnx"]["max_abs_diff"] <= TOLERANCE
    instances = churn_instances()
    sklearn = predict(client, "churn", instances)
    set_runtime(client, "churn", "onnx")
    onnx = predict(client, "churn", instances)
    assert served_runtime(client, "churn") == "onnx"
    assert_same_answers(sklearn, onnx)


def test_hist_gradient_boosting_twin_serves_like_sklearn(client: TestClient) -> None:
    x, y = iris_xy()
    model = HistGradientBoostingClassifier(max_iter=50, random_state=0).fit(x, y)
    response = register(client, "hgb", dump_skops(model), iris_schema(), runtime="sklearn")
    assert response.status_code == 201, response.text
    assert response.json()["onnx"]["max_abs_diff"] <= TOLERANCE
    instances = [iris_instance(i) for i in range(150)]
    sklearn = predict(client, "hgb", instances)
    set_runtime(client, "hgb", "onnx")
    assert_same_answers(sklearn, predict(client, "hgb", instances))
    assert served_runtime(client, "hgb") == "onnx"


def test_unconvertible_model_registers_and_serves_on_sklearn(client: TestClient) -> None:
    x, y = iris_xy()
    model = NearestCentroid().fit(x, y)  # skl2onnx has no converter for it
    response = register(client, "centroid", dump_skops(model), iris_schema())
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["onnx"] is None
    assert "NearestCentroid" in version["onnx_unavailable_reason"]
    assert client.get("/v1/models/centroid/versions/1").json()["onnx_unavailable_reason"] is None
    set_runtime(client, "centroid", "onnx")
    instances = [iris_instance(i) for i in range(0, 150, 5)]
    body = predict(client, "centroid", instances)
    expected = model.predict(np.array([[row[f] for f in IRIS_FEATURES] for row in instances]))
    assert body["predictions"] == expected.tolist()
    assert served_runtime(client, "centroid") == "sklearn"


def test_tampered_twin_is_refused(client: TestClient, db: Database) -> None:
    register(client, "iris", dump_skops(fit_iris_pipeline()), iris_schema())
    with db.transaction() as session:
        session.execute(update(OnnxTwin).values(content=b"not the twin"))
    set_runtime(client, "iris", "onnx")
    response = client.post("/v1/models/iris/predict", json={"instances": [iris_instance()]})
    assert response.status_code == 503
    assert response.json()["code"] == "artifact_integrity_error"
    set_runtime(client, "iris", "sklearn")
    assert predict(client, "iris", [iris_instance()])["predictions"] == ["setosa"]


def test_models_show_has_an_onnx_column(
    cli_env: Settings, client: TestClient, tmp_path: Path
) -> None:
    register(client, "iris", dump_skops(fit_iris_pipeline()), iris_schema())
    x, y = iris_xy()
    register(client, "iris", dump_skops(NearestCentroid().fit(x, y)), iris_schema())
    result = CliRunner().invoke(cli_app, ["models", "show", "iris"])
    assert result.exit_code == 0, result.output
    assert "onnx" in result.output
    lines = [line for line in result.output.splitlines() if "skops" in line]
    assert len(lines) == 2
    assert "yes (" in lines[0]
    assert lines[1].split("│")[-3].strip() == "no"


# Without a database: what converts, in which precision, and what does not.


def test_regression_twin_matches_in_double_precision() -> None:
    data = load_diabetes(as_frame=True)
    schema = InputSchema.model_validate(
        {"features": [{"name": c, "type": "number"} for c in data.data.columns]}
    )
    model = Ridge().fit(data.data.to_numpy(), data.target)
    twin = make_twin(model, schema, describe_output(model, schema))
    assert twin is not None
    assert twin.precision == "double"
    assert twin.max_abs_diff <= TOLERANCE


def test_tree_regressor_outside_tolerance_gets_no_twin() -> None:
    # ONNX Runtime's tree ensembles sum in single precision: on targets in the hundreds that is
    # ~1e-5 off, more than the tolerance, so the twin is not kept.
    data = load_diabetes(as_frame=True)
    schema = InputSchema.model_validate(
        {"features": [{"name": c, "type": "number"} for c in data.data.columns]}
    )
    model = HistGradientBoostingRegressor(max_iter=50, random_state=0).fit(
        data.data.to_numpy(), data.target
    )
    attempt = attempt_twin(model, schema, describe_output(model, schema))
    assert attempt.twin is None
    assert attempt.reason is not None
    assert "exceeds" in attempt.reason


def test_verification_sample_stays_inside_the_schema() -> None:
    schema = InputSchema.model_validate(
        {
            "features": [
                {"name": "a", "type": "number", "minimum": -2, "maximum": 3},
                {"name": "b", "type": "integer", "minimum": 1, "nullable": True},
                {"name": "c", "type": "boolean"},
                {"name": "d", "type": "category", "categories": ["x", "y", "z"]},
            ]
        }
    )
    rows = sample_instances(schema, 200)
    assert len(rows) == 200
    assert rows == sample_instances(schema, 200)  # reproducible
    assert all(-2 <= r["a"] <= 3 for r in rows)
    ints = [r["b"] for r in rows if r["b"] is not None]
    assert all(v >= 1 and float(v).is_integer() for v in ints)
    assert len(ints) < len(rows)  # some nulls
    assert {r["c"] for r in rows} == {True, False}
    assert {r["d"] for r in rows} == {"x", "y", "z"}


# The default: a new model serves its verified twin; scikit-learn can be pinned.


def test_a_new_model_serves_its_twin_by_default_and_says_so(make_client: ClientFactory) -> None:
    assert PRODUCT_DEFAULT_RUNTIME == "onnx"
    with make_client(default_runtime=PRODUCT_DEFAULT_RUNTIME) as client:
        _serves_its_twin_and_says_so(client)


def answered_probabilities(
    model: Any, instances: list[dict[str, float]], body: Any
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The instances as a matrix, and the answer's probabilities in the model's class order."""
    matrix = np.array([[row[f] for f in IRIS_FEATURES] for row in instances])
    labels = [str(c) for c in model.classes_]
    return matrix, np.array([[row[label] for label in labels] for row in body["probabilities"]])


def _serves_its_twin_and_says_so(client: TestClient) -> None:
    pipeline = fit_iris_pipeline()
    assert register(client, "iris", dump_skops(pipeline), iris_schema()).status_code == 201
    assert client.get("/v1/models/iris").json()["serving"]["runtime"] == "onnx"
    instances = [iris_instance(i) for i in range(0, 150, 3)]
    body = predict(client, "iris", instances)
    assert body["runtime"] == "onnx"
    matrix, got = answered_probabilities(pipeline, instances, body)
    assert body["predictions"] == pipeline.predict(matrix).tolist()
    assert np.abs(got - pipeline.predict_proba(matrix)).max() <= TOLERANCE  # the twin's bound
    v2 = client.post(
        "/v2/models/iris/infer",
        json={
            "inputs": [
                {"name": "x", "shape": [2, 4], "datatype": "FP64", "data": matrix[:2].tolist()}
            ]
        },
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["parameters"]["runtime"] == "onnx"


def test_scikit_learn_can_be_pinned_at_registration_and_stays_for_new_versions(
    make_client: ClientFactory,
) -> None:
    with make_client(default_runtime="onnx") as client:
        _pinned_stays(client)


def _pinned_stays(client: TestClient) -> None:
    pipeline = fit_iris_pipeline()
    data = dump_skops(pipeline)
    assert register(client, "iris", data, iris_schema(), runtime="sklearn").status_code == 201
    assert register(client, "iris", data, iris_schema()).status_code == 201  # v2 keeps it
    assert client.get("/v1/models/iris").json()["serving"]["runtime"] == "sklearn"
    instances = [iris_instance(i) for i in range(0, 150, 3)]
    body = predict(client, "iris", instances)
    assert body["runtime"] == "sklearn"
    matrix, got = answered_probabilities(pipeline, instances, body)
    np.testing.assert_array_equal(got, pipeline.predict_proba(matrix))  # bit for bit


def test_the_server_default_can_be_scikit_learn(make_client: ClientFactory) -> None:
    with make_client(default_runtime="sklearn") as client:
        assert (
            register(client, "iris", dump_skops(fit_iris_pipeline()), iris_schema()).status_code
            == 201
        )
        assert client.get("/v1/models/iris").json()["serving"]["runtime"] == "sklearn"
        assert predict(client, "iris", [iris_instance()])["runtime"] == "sklearn"


def test_a_model_without_a_twin_answers_on_scikit_learn_by_default(
    make_client: ClientFactory,
) -> None:
    with make_client(default_runtime="onnx") as client:
        _no_twin_on_sklearn(client)


def _no_twin_on_sklearn(client: TestClient) -> None:
    x, y = iris_xy()
    assert (
        register(
            client, "centroid", dump_skops(NearestCentroid().fit(x, y)), iris_schema()
        ).status_code
        == 201
    )
    assert predict(client, "centroid", [iris_instance()])["runtime"] == "sklearn"


def test_the_cli_registers_new_models_on_the_default_runtime(
    cli_env: Settings, client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELSERVE_DEFAULT_RUNTIME")  # the product default
    artifact = tmp_path / "iris.skops"
    artifact.write_bytes(dump_skops(fit_iris_pipeline()))
    schema = tmp_path / "schema.json"
    schema.write_text(orjson.dumps(iris_schema()).decode())
    command = ["models", "register", str(artifact), "--name", "iris", "--schema", str(schema)]
    result = CliRunner().invoke(cli_app, command)
    assert result.exit_code == 0, result.output
    assert client.get("/v1/models/iris").json()["serving"]["runtime"] == PRODUCT_DEFAULT_RUNTIME
    assert predict(client, "iris", [iris_instance()])["runtime"] == "onnx"
    shown = CliRunner().invoke(cli_app, ["models", "show", "iris"])
    assert "iris (runtime: onnx)" in shown.output
    pinned = [*command[:3], "--name", "pinned", *command[5:], "--runtime", "sklearn"]
    result = CliRunner().invoke(cli_app, pinned)
    assert result.exit_code == 0, result.output
    assert predict(client, "pinned", [iris_instance()])["runtime"] == "sklearn"
    shown = CliRunner().invoke(cli_app, ["models", "show", "pinned"])
    assert "pinned (runtime: sklearn)" in shown.output
    bad = CliRunner().invoke(cli_app, [*command[:3], "--name", "bad", "--runtime", "gpu"])
    assert bad.exit_code != 0


LABELS = {  # how the iris species become the classes, and V2's datatype for them
    "INT64": lambda y: y.map({"setosa": 0, "versicolor": 1, "virginica": 2}),
    "BYTES": lambda y: y,
    "BOOL": lambda y: y == "setosa",
    "FP64": lambda y: y.map({"setosa": 1.0, "versicolor": 2.0, "virginica": 3.0}),
}


@pytest.mark.parametrize("datatype", LABELS)
def test_the_twin_answers_the_models_own_labels(make_client: ClientFactory, datatype: str) -> None:
    # ONNX gives a boolean class as 0/1 and a float class as an integer: the answer still
    # carries scikit-learn's labels, of their own type.
    from sklearn.linear_model import LogisticRegression

    x, species = iris_xy()
    model = LogisticRegression(max_iter=500).fit(x, LABELS[datatype](species))
    with make_client(default_runtime="onnx") as client:
        assert register(client, "iris", dump_skops(model), iris_schema()).status_code == 201
        instances = [iris_instance(i) for i in range(0, 150, 7)]
        body = predict(client, "iris", instances)
        matrix = np.array([[row[f] for f in IRIS_FEATURES] for row in instances])
        tensor = {"name": "x", "shape": list(matrix.shape), "datatype": "FP64"}
        v2 = client.post(
            "/v2/models/iris/infer", json={"inputs": [{**tensor, "data": matrix.tolist()}]}
        )
    assert body["runtime"] == "onnx"
    want = model.predict(matrix).tolist()
    assert body["predictions"] == want
    assert [type(p) for p in body["predictions"]] == [type(p) for p in want]
    assert v2.status_code == 200, v2.text
    [predicted] = [t for t in v2.json()["outputs"] if t["name"] == "predict"]
    assert predicted["datatype"] == datatype
    assert predicted["data"] == want
