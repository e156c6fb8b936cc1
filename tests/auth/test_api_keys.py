"""API keys: shown once, hashed, prefixed, restricted to models, expiring, revocable, quotas."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories import PASSWORD, create_key, create_user, iris_instance, register_iris
from fastapi.testclient import TestClient
from sqlalchemy import select

from modelserve.auth.models import ApiKey
from modelserve.core.db import Database
from modelserve.users.models import Role

PREDICT = {"instances": [iris_instance()]}


def test_key_shown_once_and_stored_hashed(client: TestClient, db: Database) -> None:
    created = client.post("/v1/api-keys", json={"name": "ci"}).json()
    assert created["key"].startswith(created["prefix"] + "_")
    listed = client.get("/v1/api-keys").json()["data"]
    assert all("key" not in k for k in listed)
    with db.sessions() as session:
        stored = session.scalars(select(ApiKey).where(ApiKey.id == created["id"])).one()
    assert created["key"] not in (stored.key_hash, stored.prefix)
    by_bearer = TestClient(client.app, headers={"Authorization": f"Bearer {created['key']}"})
    assert by_bearer.get("/v1/users/me").status_code == 200


def test_users_manage_only_their_own_keys(client: TestClient, db: Database) -> None:
    create_key(db, create_user(db, "ursula"))
    token = client.post("/v1/auth/token", data={"username": "ursula", "password": PASSWORD})
    user = TestClient(
        client.app, headers={"Authorization": f"Bearer {token.json()['access_token']}"}
    )
    other = client.post("/v1/api-keys", json={"name": "admin's"}).json()
    assert user.delete(f"/v1/api-keys/{other['id']}").status_code == 404
    assert user.post("/v1/api-keys", json={"name": "x", "user_id": 1}).status_code == 403
    assert [k["name"] for k in user.get("/v1/api-keys").json()["data"]] == ["test"]
    mine = user.post("/v1/api-keys", json={"name": "second"}).json()
    assert user.delete(f"/v1/api-keys/{mine['id']}").json()["revoked_at"] is not None
    assert (
        TestClient(client.app, headers={"X-API-Key": mine["key"]}).get("/v1/users/me").status_code
        == 401
    )


def test_key_restricted_to_models(client: TestClient, db: Database) -> None:
    register_iris(client, name="iris")
    register_iris(client, name="other")
    key = create_key(db, create_user(db, "rita", Role.MAINTAINER), models=["iris"])
    limited = TestClient(client.app, headers={"X-API-Key": key})
    assert limited.post("/v1/models/iris/predict", json=PREDICT).status_code == 200
    assert limited.post("/v1/models/other/predict", json=PREDICT).status_code == 403
    assert limited.get("/v1/models/other").status_code == 403
    assert limited.put("/v1/models/other/aliases/x", json={"version": 1}).status_code == 403
    assert [m["name"] for m in limited.get("/v1/models").json()["data"]] == ["iris"]


def test_expired_key_refused(client: TestClient, db: Database) -> None:
    user = create_user(db, "sam")
    soon = datetime.now(UTC) + timedelta(seconds=3)
    key = create_key(db, user, expires_at=soon)
    caller = TestClient(client.app, headers={"X-API-Key": key})
    assert caller.get("/v1/users/me").status_code == 200
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)
    assert caller.get("/v1/users/me").status_code == 401
    past = {"name": "late", "expires_at": "2020-01-01T00:00:00Z"}
    assert client.post("/v1/api-keys", json=past).status_code == 422


def test_quota_answers_429_and_recovers(client: TestClient, db: Database) -> None:
    register_iris(client)
    key = create_key(db, create_user(db, "tom"), quota_per_minute=2)
    caller = TestClient(client.app, headers={"X-API-Key": key})
    statuses = [caller.post("/v1/models/iris/predict", json=PREDICT).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = caller.post("/v1/models/iris/predict", json=PREDICT)
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert caller.get("/v1/models").status_code == 200  # the quota counts predictions only


def test_quota_window_recovers(client: TestClient, db: Database) -> None:
    from modelserve.auth.ratelimit import RateLimiter
    from modelserve.core.errors import TooManyRequests

    now = [1000.0]
    limiter = RateLimiter(db, clock=lambda: now[0])
    limiter.hit("k", limit=1, window_seconds=60, message="m")
    with pytest.raises(TooManyRequests) as refused:
        limiter.hit("k", limit=1, window_seconds=60, message="m")
    assert refused.value.details == {"retry_after": 20}
    now[0] = 1020.0
    limiter.hit("k", limit=1, window_seconds=60, message="m")
    assert limiter.count("k", 60) == 1


def test_cors_closed_by_default_and_configurable(client: TestClient, make_client: Any) -> None:
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}
    closed = client.options("/v1/models", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    with make_client(cors_origins=["https://app.example.com"]) as open_client:
        opened = open_client.options("/v1/models", headers=preflight)
        assert opened.headers["access-control-allow-origin"] == "https://app.example.com"
    docs = client.get("/docs")
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]
