"""Registering, listing, showing and aliasing models over HTTP."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest
import sklearn
from factories import fit_iris, iris_schema, register, register_iris, to_bytes
from fastapi.testclient import TestClient
from sklearn.linear_model import LinearRegression


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    assert body["message"]
    return body


@pytest.mark.parametrize("fmt", ["skops", "joblib", "pickle"])
def test_register_each_format(client: TestClient, fmt: str) -> None:
    version = register_iris(client, fmt=fmt, description="first", metrics={"accuracy": 0.97})
    assert version["version"] == 1
    assert version["format"] == fmt
    assert version["output"] == {
        "task": "classification",
        "classes": ["setosa", "versicolor", "virginica"],
        "probabilities": True,
    }
    assert [f["name"] for f in version["input_schema"]["features"]] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert len(version["sha256"]) == 64
    assert version["environment"]["scikit-learn"] == sklearn.__version__
    assert version["sklearn_version_mismatch"] is False
    assert version["metrics"] == {"accuracy": 0.97}
    assert version["created_at"].endswith(("Z", "+00:00"))


def test_versions_number_up_and_list_show(client: TestClient) -> None:
    register_iris(client)
    second = register_iris(client, alias="staging")
    assert second["version"] == 2
    assert second["aliases"] == ["staging"]
    listing = client.get("/v1/models").json()
    assert listing["count"] == 1
    assert listing["data"][0] | {"created_at": None} == {
        "name": "iris",
        "latest_version": 2,
        "aliases": {"staging": 2},
        "created_at": None,
        "serving": {"runtime": "sklearn", "batching": None},
    }
    shown = client.get("/v1/models/iris").json()
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    assert client.get("/v1/models/iris/versions/2").json()["aliases"] == ["staging"]


def test_alias_moves_and_reports_previous(client: TestClient) -> None:
    register_iris(client)
    register_iris(client)
    first = client.put("/v1/models/iris/aliases/production", json={"version": 1})
    assert first.json() == {
        "model": "iris",
        "alias": "production",
        "version": 1,
        "previous_version": None,
    }
    moved = client.put("/v1/models/iris/aliases/production", json={"version": 2})
    assert moved.json()["previous_version"] == 1
    assert client.get("/v1/models").json()["data"][0]["aliases"] == {"production": 2}


def test_not_found_errors(client: TestClient) -> None:
    register_iris(client)
    assert_error(client.get("/v1/models/nope"), 404, "not_found")
    assert_error(client.get("/v1/models/iris/versions/9"), 404, "not_found")
    assert_error(client.put("/v1/models/iris/aliases/x", json={"version": 9}), 404, "not_found")
    assert_error(client.put("/v1/models/nope/aliases/x", json={"version": 1}), 404, "not_found")
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")


def test_alias_body_validation(client: TestClient) -> None:
    register_iris(client)
    assert_error(
        client.put("/v1/models/iris/aliases/x", json={"version": 0}), 422, "validation_error"
    )
    assert_error(
        client.put("/v1/models/iris/aliases/x", json={"version": "1"}), 422, "validation_error"
    )
    bad_json = client.put(
        "/v1/models/iris/aliases/x", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert_error(bad_json, 400, "malformed_json")


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.target}",))


def test_pickle_reaching_for_os_system_is_refused(client: TestClient, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"model": _Exploit(marker)})
    body = assert_error(register(client, "evil", payload, iris_schema()), 422, "unsafe_artifact")
    assert any("system" in name for name in body["details"]["disallowed"])
    assert not marker.exists()
    assert client.get("/v1/models").json()["count"] == 0


def test_model_not_matching_schema_is_refused(client: TestClient) -> None:
    schema = {"features": [{"name": "only_one", "type": "number"}]}
    body = assert_error(
        register(client, "iris", to_bytes(fit_iris(), "skops"), schema), 422, "invalid_artifact"
    )
    assert "schema" in body["message"]


def test_regression_output_described(client: TestClient) -> None:
    model = LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 2.0, 4.0])
    schema = {"features": [{"name": "x", "type": "number"}]}
    response = register(client, "line", to_bytes(model, "skops"), schema)
    assert response.status_code == 201, response.text
    assert response.json()["output"] == {
        "task": "regression",
        "classes": None,
        "probabilities": False,
    }


def test_bad_metadata(client: TestClient) -> None:
    data = to_bytes(fit_iris(), "skops")
    files = {"file": ("m.skops", data, "application/octet-stream")}
    assert_error(client.post("/v1/models", files=files, data={"metadata": "{"}), 400, "bad_request")
    bad_schema = orjson.dumps({"name": "x", "input_schema": {"features": []}}).decode()
    body = assert_error(
        client.post("/v1/models", files=files, data={"metadata": bad_schema}),
        422,
        "validation_error",
    )
    assert body["details"][0]["loc"][:2] == ["metadata", "input_schema"]
    bad_name = orjson.dumps({"name": "../etc", "input_schema": iris_schema()}).decode()
    assert_error(
        client.post("/v1/models", files=files, data={"metadata": bad_name}), 422, "validation_error"
    )
    missing_file = client.post("/v1/models", data={"metadata": bad_name})
    assert_error(missing_file, 422, "validation_error")


def test_garbage_artifact_refused(client: TestClient) -> None:
    assert_error(
        register(client, "junk", b"not a model at all", iris_schema()), 422, "invalid_artifact"
    )


def test_declared_older_sklearn_is_flagged(client: TestClient) -> None:
    version = register_iris(client, environment={"scikit-learn": "0.24.2", "python": "3.8.10"})
    assert version["sklearn_version_mismatch"] is True
    assert version["environment"]["source"] == "declared"


def test_pickle_from_older_sklearn_is_flagged(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sklearn.base, "__version__", "1.0.0")
    data = to_bytes(fit_iris(), "pickle")
    monkeypatch.undo()
    response = register(client, "old", data, iris_schema())
    assert response.status_code == 201, response.text
    assert response.json()["environment"]["scikit-learn"] == "1.0.0"
    assert response.json()["sklearn_version_mismatch"] is True


def test_upload_over_limit_is_413(make_client: Any) -> None:
    with make_client(max_upload_bytes=2048) as client:
        response = register(client, "big", b"x" * 5000, iris_schema())
    assert_error(response, 413, "payload_too_large")


def test_format_from_extension_then_bytes(client: TestClient) -> None:
    import io

    import joblib

    buffer = io.BytesIO()
    joblib.dump(fit_iris(), buffer)  # uncompressed: a plain pickle stream
    plain = buffer.getvalue()
    named = register(client, "iris", plain, iris_schema(), filename="model.joblib")
    assert named.json()["format"] == "joblib"
    unnamed = register(client, "iris", plain, iris_schema(), filename="upload")
    assert unnamed.json()["format"] == "pickle"
    declared = register(client, "iris", plain, iris_schema(), filename="x.bin", format="joblib")
    assert declared.json()["format"] == "joblib"
    wrong = register(client, "iris", plain, iris_schema(), filename="model.skops")
    assert wrong.status_code == 422
    assert wrong.json()["code"] == "invalid_artifact"


def test_serving_settings_round_trip_and_validation(client: TestClient) -> None:
    register_iris(client)
    body = {"runtime": "onnx", "batching": {"max_batch_size": 32, "max_wait_ms": 2.5}}
    response = client.put("/v1/models/iris/serving", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == body
    assert client.get("/v1/models/iris").json()["serving"] == body
    off = client.put("/v1/models/iris/serving", json={"runtime": "sklearn"}).json()
    assert off == {"runtime": "sklearn", "batching": None}
    bad = client.put("/v1/models/iris/serving", json={"runtime": "tensorrt"})
    assert bad.status_code == 422
    too_small = {"batching": {"max_batch_size": 1, "max_wait_ms": 1}}
    assert client.put("/v1/models/iris/serving", json=too_small).status_code == 422
    assert client.put("/v1/models/nope/serving", json={}).status_code == 404
    events = client.get("/v1/audit", params={"action": "model.serving_set"}).json()["data"]
    assert len(events) == 2
