"""Canary and shadow traffic policies, the version comparison, and warm-up failures, over HTTP."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from factories import (
    IRIS_FEATURES,
    create_key,
    create_user,
    fit_iris,
    iris_frame,
    iris_schema,
    metric_samples,
    register,
    register_iris,
    to_bytes,
)
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression
from sqlalchemy import update

from modelserve.core.db import Database
from modelserve.registry.models import ModelArtifact, ModelVersion, ServingForm


def fit_weak_iris() -> LogisticRegression:
    """A deliberately different iris model (strong regularisation), so versions disagree."""
    frame = iris_frame()
    return LogisticRegression(C=0.01, max_iter=500).fit(
        frame[IRIS_FEATURES].to_numpy(), frame["species"]
    )


def two_versions(client: TestClient) -> None:
    """iris v1 (production) and a different iris v2."""
    register_iris(client, alias="production")
    response = register(client, "iris", to_bytes(fit_weak_iris(), "skops"), iris_schema())
    assert response.status_code == 201, response.text


def rows(indices: list[int]) -> list[dict[str, float]]:
    frame = iris_frame()
    return [{f: float(frame.iloc[i][f]) for f in IRIS_FEATURES} for i in indices]


def predict_as(client: TestClient, key: str, instances: list[dict[str, float]]) -> Any:
    response = client.post(
        "/v1/models/iris/predict", json={"instances": instances}, headers={"X-API-Key": key}
    )
    assert response.status_code == 200, response.text
    return response.json()


def log_entries(client: TestClient) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"model": "iris", "limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/predictions", params=params).json()
        entries.extend(page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return entries


def wait_for_shadows(client: TestClient, expected: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        shadows = [e for e in log_entries(client) if e["shadow"]]
        if len(shadows) >= expected or time.monotonic() > deadline:
            return shadows
        time.sleep(0.05)


def test_canary_share_is_sticky_per_caller(client: TestClient, db: Database) -> None:
    two_versions(client)
    policy = client.put("/v1/models/iris/traffic", json={"canary": {"version": 2, "percent": 50}})
    assert policy.status_code == 200, policy.text
    assert policy.json()["canary"] == {"version": 2, "percent": 50.0}
    assert policy.json()["version"] == 1
    served: dict[str, set[int]] = {}
    for n in range(24):
        key = create_key(db, create_user(db, f"caller-{n}"))
        served[key] = {predict_as(client, key, rows([0]))["version"] for _ in range(4)}
    assert all(len(versions) == 1 for versions in served.values())  # sticky
    sides = [next(iter(v)) for v in served.values()]
    assert set(sides) == {1, 2}
    variants = {(e["version"], e["variant"]) for e in log_entries(client)}
    assert variants == {(1, "primary"), (2, "canary")}
    # An explicit version is never redirected.
    for key in served:
        response = client.post(
            "/v1/models/iris/versions/1/predict",
            json={"instances": rows([0])},
            headers={"X-API-Key": key},
        )
        assert response.json()["version"] == 1


def test_canary_at_full_share_then_cleared(client: TestClient, db: Database) -> None:
    two_versions(client)
    key = create_key(db, create_user(db, "someone"))
    client.put("/v1/models/iris/traffic", json={"canary": {"version": 2, "percent": 100}})
    assert predict_as(client, key, rows([0]))["version"] == 2
    cleared = client.put("/v1/models/iris/traffic", json={})
    assert cleared.status_code == 200
    assert cleared.json()["canary"] is None
    assert predict_as(client, key, rows([0]))["version"] == 1
    assert client.get("/v1/models/iris/traffic").json() == {"data": []}


def test_shadow_is_logged_not_returned_and_compare_summarises(client: TestClient) -> None:
    two_versions(client)
    assert client.put("/v1/models/iris/traffic", json={"shadow": {"version": 2}}).status_code == 200
    batches = [[0, 60, 120], [10, 70, 110], [25, 50, 149], [5, 77, 130]]
    request_ids = []
    for batch in batches:
        body = predict_as(client, client.headers["X-API-Key"], rows(batch))
        assert body["version"] == 1
        request_ids.append(body["request_id"])
    shadows = wait_for_shadows(client, len(batches))
    assert sorted(s["request_id"] for s in shadows) == sorted(request_ids)
    assert {(s["version"], s["variant"], s["status"]) for s in shadows} == {(2, "shadow", "ok")}

    frame = iris_frame()
    x = frame[IRIS_FEATURES].to_numpy()[[i for b in batches for i in b]]
    strong, weak = fit_iris(), fit_weak_iris()
    expected_agreement = float(np.mean(strong.predict(x) == weak.predict(x)))
    expected_diff = float(np.mean(np.abs(strong.predict_proba(x) - weak.predict_proba(x))))
    summary = client.get("/v1/models/iris/compare", params={"a": 1, "b": 2}).json()
    assert summary["requests"] == len(batches)
    assert summary["rows"] == x.shape[0]
    assert summary["agreement_rate"] == pytest.approx(expected_agreement)
    assert summary["mean_abs_probability_diff"] == pytest.approx(expected_diff, rel=1e-6)
    assert summary["mean_abs_probability_diff"] > 0
    reverse = client.get("/v1/models/iris/compare", params={"a": 2, "b": 1}).json()
    assert reverse["requests"] == len(batches)


def test_shadow_failure_never_reaches_the_caller(client: TestClient) -> None:
    register_iris(client, alias="production")
    # v2 needs a feature v1's callers don't send: every shadow run is invalid, callers are fine.
    schema = {"features": [*iris_schema()["features"], {"name": "extra", "type": "number"}]}
    estimator = LogisticRegression(max_iter=500).fit(
        np.c_[iris_frame()[IRIS_FEATURES].to_numpy(), np.zeros(150)], iris_frame()["species"]
    )
    assert register(client, "iris", to_bytes(estimator, "skops"), schema).status_code == 201
    client.put("/v1/models/iris/traffic", json={"shadow": {"version": 2}})
    body = predict_as(client, client.headers["X-API-Key"], rows([0]))
    assert body["version"] == 1
    shadows = wait_for_shadows(client, 1)
    assert [(s["status"], s["http_status"]) for s in shadows] == [("invalid", 422)]


def test_a_busy_shadow_never_holds_callers(client: TestClient) -> None:
    two_versions(client)
    assert client.put("/v1/models/iris/traffic", json={"shadow": {"version": 2}}).status_code == 200
    shadows = client.app.state.modelserve.inference.shadows  # type: ignore[attr-defined]
    gate = threading.Event()
    # Occupy the real shadow thread: every shadow run now waits behind this one.
    shadows._executor.submit(gate.wait, 60)
    try:
        for index in (0, 60, 120):
            assert predict_as(client, client.headers["X-API-Key"], rows([index]))["version"] == 1
        assert [e for e in log_entries(client) if e["shadow"]] == []
    finally:
        gate.set()
    assert len(wait_for_shadows(client, 3)) == 3


def test_a_full_shadow_backlog_skips_shadows_not_callers(make_client: Any) -> None:
    with make_client(shadow_backlog=2) as client:
        two_versions(client)
        client.put("/v1/models/iris/traffic", json={"shadow": {"version": 2}})
        shadows = client.app.state.modelserve.inference.shadows
        gate = threading.Event()
        shadows._executor.submit(gate.wait, 60)
        try:
            for index in range(5):
                assert (
                    predict_as(client, client.headers["X-API-Key"], rows([index]))["version"] == 1
                )
        finally:
            gate.set()
        assert len(wait_for_shadows(client, 2)) == 2
        samples = metric_samples(client)
        runs = {
            outcome: samples[("modelserve_shadow_runs_total", (("outcome", outcome),))]
            for outcome in ("completed", "skipped")
        }
        assert runs["skipped"] == 3
        deadline = time.monotonic() + 30
        while runs["completed"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            runs["completed"] = metric_samples(client)[
                ("modelserve_shadow_runs_total", (("outcome", "completed"),))
            ]
        assert runs["completed"] == 2
        assert len([e for e in log_entries(client) if e["shadow"]]) == 2


def test_traffic_policy_errors(client: TestClient) -> None:
    two_versions(client)
    missing_version = client.put("/v1/models/iris/traffic", json={"shadow": {"version": 9}})
    assert missing_version.status_code == 404
    missing_alias = client.put(
        "/v1/models/iris/traffic", json={"alias": "staging", "shadow": {"version": 2}}
    )
    assert missing_alias.status_code == 404
    zero = client.put("/v1/models/iris/traffic", json={"canary": {"version": 2, "percent": 0}})
    assert zero.status_code == 422
    assert zero.json()["code"] == "validation_error"
    assert client.get("/v1/models/nope/traffic").status_code == 404
    assert client.get("/v1/models/iris/compare", params={"a": 1, "b": 7}).status_code == 404
    empty = client.get("/v1/models/iris/compare", params={"a": 1, "b": 2}).json()
    assert (empty["requests"], empty["agreement_rate"]) == (0, None)


def test_version_that_fails_to_load_never_takes_traffic(client: TestClient, db: Database) -> None:
    two_versions(client)
    with db.transaction() as session:
        v2 = session.query(ModelVersion).filter_by(number=2).one()
        for table in (ModelArtifact, ServingForm):  # everything v2 could load from
            session.execute(update(table).where(table.version_id == v2.id).values(content=b"x"))
    moved = client.put("/v1/models/iris/aliases/production", json={"version": 2})
    assert moved.status_code == 409
    assert moved.json()["code"] == "warmup_failed"
    assert "does not match its sha256" in moved.json()["details"]["error"]
    assert client.get("/v1/models/iris").json()["aliases"] == {"production": 1}
    canary = client.put("/v1/models/iris/traffic", json={"canary": {"version": 2, "percent": 5}})
    assert canary.status_code == 409
    assert client.get("/v1/models/iris/traffic").json() == {"data": []}


def test_rollback_follows_the_audit_trail(client: TestClient) -> None:
    register_iris(client, alias="production")
    never_moved = client.post("/v1/models/iris/aliases/production/rollback")
    assert never_moved.status_code == 409
    register_iris(client, alias="production")
    register_iris(client, alias="production")
    back = client.post("/v1/models/iris/aliases/production/rollback")
    assert back.status_code == 200, back.text
    assert (back.json()["version"], back.json()["previous_version"]) == (2, 3)
    assert client.get("/v1/models/iris").json()["aliases"] == {"production": 2}
    assert client.post("/v1/models/iris/aliases/staging/rollback").status_code == 404
    assert client.post("/v1/models/nope/aliases/production/rollback").status_code == 404
