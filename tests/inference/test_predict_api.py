"""Predicting over HTTP: resolution, response shape, every bad input, and what gets logged."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from conftest import ClientFactory
from factories import (
    fit_iris,
    iris_instance,
    iris_schema,
    register,
    register_iris,
    to_bytes,
    unlabelled_metrics,
)
from fastapi.testclient import TestClient
from sqlalchemy import update

from modelserve.core.db import Database
from modelserve.registry.models import ModelArtifact

IRIS_LABELS = {"setosa", "versicolor", "virginica"}


def log(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/predictions", params=params)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def assert_logged_failure(client: TestClient, status: int, code: str) -> dict[str, Any]:
    rows = log(client)
    assert len(rows) == 1
    row = rows[0]
    assert row["http_status"] == status
    assert row["status"] == ("invalid" if status < 500 else "error")
    assert row["outputs"] is None
    assert row["error"]["code"] == code
    return row


def test_predict_response_and_log(client: TestClient) -> None:
    register_iris(client)
    instances = [iris_instance(0), iris_instance(100)]
    response = client.post("/v1/models/iris/predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "iris"
    assert body["version"] == 1
    assert body["predictions"] == ["setosa", "virginica"]
    assert len(body["probabilities"]) == 2
    for probabilities in body["probabilities"]:
        assert set(probabilities) == IRIS_LABELS
        assert sum(probabilities.values()) == pytest.approx(1.0)
    assert response.headers["x-request-id"] == body["request_id"]
    [row] = log(client, model="iris")
    assert row["request_id"] == body["request_id"]
    assert (row["model"], row["version"], row["status"], row["n_rows"]) == ("iris", 1, "ok", 2)
    assert row["inputs"] == instances
    assert row["outputs"] == {
        "predictions": body["predictions"],
        "probabilities": body["probabilities"],
    }
    assert row["error"] is None
    assert row["latency_ms"] > 0


def test_request_ids_are_time_ordered(client: TestClient) -> None:
    """Request ids are UUID version 7: their first 48 bits are the time in milliseconds, so a
    later request's id sorts after an earlier one's (and the log's index on them appends)."""
    register_iris(client)
    before_ms = time.time_ns() // 1_000_000
    ids: list[uuid.UUID] = []
    for n in range(4):
        if n % 2:
            response = client.post(
                "/v1/models/iris/predict", json={"instances": [iris_instance(n)]}
            )
        else:
            inputs = [
                {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": _iris_row(n)}
            ]
            response = client.post("/v2/models/iris/infer", json={"inputs": inputs})
        assert response.status_code == 200, response.text
        ids.append(uuid.UUID(response.headers["x-request-id"]))
        time.sleep(0.002)  # the next id's millisecond is a later one
    after_ms = time.time_ns() // 1_000_000
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    stamps = [i.int >> 80 for i in ids]
    assert before_ms <= stamps[0] < stamps[1] < stamps[2] < stamps[3] <= after_ms
    assert sorted(ids) == ids
    logged = [uuid.UUID(row["request_id"]) for row in log(client, model="iris")]
    assert sorted(logged) == ids  # the log lists the same ids (newest first)


def _iris_row(n: int) -> list[float]:
    return [float(v) for v in iris_instance(n).values()]


def test_resolution_production_else_latest(client: TestClient) -> None:
    register_iris(client)
    register_iris(client)
    payload = {"instances": [iris_instance()]}
    assert client.post("/v1/models/iris/predict", json=payload).json()["version"] == 2
    client.put("/v1/models/iris/aliases/production", json={"version": 1})
    assert client.post("/v1/models/iris/predict", json=payload).json()["version"] == 1
    assert client.post("/v1/models/iris/versions/2/predict", json=payload).json()["version"] == 2
    client.put("/v1/models/iris/aliases/canary", json={"version": 2})
    assert (
        client.post("/v1/models/iris/aliases/canary/predict", json=payload).json()["version"] == 2
    )
    assert [r["version"] for r in log(client)] == [2, 2, 1, 2]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/nope/predict",
        "/v1/models/iris/versions/7/predict",
        "/v1/models/iris/aliases/nope/predict",
    ],
)
def test_unknown_model_version_alias_404_and_nothing_logged(client: TestClient, path: str) -> None:
    register_iris(client)
    response = client.post(path, json={"instances": [iris_instance()]})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert log(client) == []


BAD_INSTANCES: list[tuple[str, Any, list[tuple[int | None, str | None, str]]]] = [
    (
        "missing feature",
        [{"sepal_length": 1.0, "sepal_width": 1.0, "petal_length": 1.0}],
        [(0, "petal_width", "missing")],
    ),
    ("unknown feature", [iris_instance() | {"colour": "red"}], [(0, "colour", "unknown_feature")]),
    (
        "string for number",
        [iris_instance() | {"sepal_length": "12"}],
        [(0, "sepal_length", "wrong_type")],
    ),
    (
        "boolean for number",
        [iris_instance() | {"sepal_length": True}],
        [(0, "sepal_length", "wrong_type")],
    ),
    (
        "below minimum",
        [iris_instance(), iris_instance() | {"petal_width": -1.0}],
        [(1, "petal_width", "out_of_range")],
    ),
    ("null not nullable", [iris_instance() | {"sepal_width": None}], [(0, "sepal_width", "null")]),
    (
        "every problem listed",
        [iris_instance() | {"sepal_length": "x"}, {"petal_width": 1.0, "zzz": 1}],
        [
            (0, "sepal_length", "wrong_type"),
            (1, "sepal_length", "missing"),
            (1, "sepal_width", "missing"),
            (1, "petal_length", "missing"),
            (1, "zzz", "unknown_feature"),
        ],
    ),
    ("instance not an object", [[1, 2, 3, 4]], [(0, None, "wrong_type")]),
    ("empty", [], [(None, None, "empty")]),
]


@pytest.mark.parametrize(
    ("label", "instances", "expected"), BAD_INSTANCES, ids=[case[0] for case in BAD_INSTANCES]
)
def test_invalid_instances_422_listing_every_problem(
    client: TestClient, label: str, instances: Any, expected: list[Any]
) -> None:
    register_iris(client)
    response = client.post("/v1/models/iris/predict", json={"instances": instances})
    assert response.status_code == 422, label
    body = response.json()
    assert body["code"] == "validation_error"
    assert [(p["row"], p["feature"], p["type"]) for p in body["details"]] == expected
    row = assert_logged_failure(client, 422, "validation_error")
    assert row["inputs"] == instances
    assert row["error"]["details"] == body["details"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_refused(client: TestClient, literal: str) -> None:
    register_iris(client)
    raw = (
        f'{{"instances": [{{"sepal_length": {literal}, "sepal_width": 1, "petal_length": 1, '
        '"petal_width": 1}]}'
    )
    response = client.post("/v1/models/iris/predict", content=raw.encode())
    assert response.status_code == 422, response.text
    [problem] = response.json()["details"]
    assert (problem["feature"], problem["type"]) == ("sepal_length", "not_finite")
    row = assert_logged_failure(client, 422, "validation_error")
    assert isinstance(row["inputs"][0]["sepal_length"], str)


def test_nan_allowed_when_nullable(client: TestClient) -> None:
    from factories import IRIS_FEATURES, iris_frame
    from sklearn.ensemble import HistGradientBoostingClassifier

    frame = iris_frame()
    model = HistGradientBoostingClassifier(max_iter=20).fit(
        frame[IRIS_FEATURES].to_numpy(), frame["species"]
    )
    response = register(client, "hgb", to_bytes(model, "skops"), iris_schema(nullable=True))
    assert response.status_code == 201, response.text
    instance = iris_instance() | {"sepal_length": None}
    raw = json.dumps({"instances": [instance, iris_instance() | {"petal_width": float("nan")}]})
    answer = client.post("/v1/models/hgb/predict", content=raw.encode())
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 2


def test_too_many_instances(make_client: Any) -> None:
    with make_client(max_batch_size=3) as client:
        register_iris(client)
        response = client.post("/v1/models/iris/predict", json={"instances": [iris_instance()] * 4})
        assert response.status_code == 422
        assert response.json()["details"][0]["type"] == "too_many"
        assert_logged_failure(client, 422, "validation_error")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"", 400, "malformed_json"),
        (b'["instances"]', 422, "validation_error"),
        (b'{"rows": []}', 422, "validation_error"),
        (b'{"instances": {"a": 1}}', 422, "validation_error"),
    ],
)
def test_malformed_bodies(client: TestClient, body: bytes, status: int, code: str) -> None:
    register_iris(client)
    response = client.post(
        "/v1/models/iris/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    assert response.json()["code"] == code
    row = assert_logged_failure(client, status, code)
    if status == 400:
        assert row["inputs"] is None


def test_body_over_limit_is_413_and_logged(make_client: Any) -> None:
    with make_client(max_body_bytes=2048) as client:
        register_iris(client)
        response = client.post(
            "/v1/models/iris/predict", json={"instances": [iris_instance()] * 100}
        )
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"
        assert_logged_failure(client, 413, "payload_too_large")


def test_tampered_artifact_refused_at_load(client: TestClient, db: Database) -> None:
    register_iris(client, fmt="pickle")
    tampered = to_bytes(
        fit_iris().set_params(C=0.01).fit([[0, 0, 0, 0], [1, 1, 1, 1]], ["a", "b"]), "pickle"
    )
    with db.transaction() as session:
        session.execute(update(ModelArtifact).values(content=tampered))
    # Registration warmed it; unloading makes the next request load it again.
    assert client.post("/v2/repository/models/iris/unload").status_code == 200
    response = client.post("/v1/models/iris/predict", json={"instances": [iris_instance()]})
    assert response.status_code == 503
    assert response.json()["code"] == "artifact_integrity_error"
    assert_logged_failure(client, 503, "artifact_integrity_error")


def test_model_loaded_once_per_process(client: TestClient) -> None:
    register_iris(client)
    state = client.app.state.modelserve  # type: ignore[attr-defined]
    for _ in range(3):
        client.post("/v1/models/iris/predict", json={"instances": [iris_instance()]})
    assert state.cache.loads == 1
    register_iris(client)
    client.post("/v1/models/iris/predict", json={"instances": [iris_instance()]})
    assert state.cache.loads == 2


@pytest.mark.parametrize("inline_max_ms", [0.0, 50.0])
def test_served_on_the_event_loop_or_a_worker_thread_alike(
    make_client: ClientFactory, inline_max_ms: float
) -> None:
    # 50 ms: small iris requests are served on the event loop once the route and the model's
    # cost are known (a request on a worker thread learns both; the registration's change
    # reaching the route table may cost one more); 0: none is. Answers, refusals and the log
    # are the same either way.
    with make_client(inline_max_ms=inline_max_ms) as client:
        register_iris(client)
        good = {"instances": [iris_instance(0), iris_instance(100)]}
        answers = [client.post("/v1/models/iris/predict", json=good) for _ in range(4)]
        bad = {"instances": [{**iris_instance(0), "sepal_length": "long"}]}
        refused = client.post("/v1/models/iris/predict", json=bad)
        rows = {row["status"]: row for row in log(client, model="iris")}
        inline = unlabelled_metrics(client)["modelserve_predictions_inline_total"]
    for answered in answers:
        assert answered.status_code == 200, answered.text
        assert answered.json()["predictions"] == ["setosa", "virginica"]
    assert refused.status_code == 422
    assert refused.json()["code"] == "validation_error"
    assert rows["ok"]["inputs"] == good["instances"]
    assert rows["ok"]["outputs"]["predictions"] == ["setosa", "virginica"]
    assert rows["invalid"]["error"]["code"] == "validation_error"
    if inline_max_ms:
        assert inline >= 3
    else:
        assert inline == 0
