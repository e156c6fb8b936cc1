"""Scopes hold: API keys cannot manage keys (admins' keys only within themselves), and a key
restricted to some models reads only those models' predictions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from factories import PASSWORD, create_key, create_user, iris_instance, register_iris
from fastapi.testclient import TestClient

from modelserve.core.db import Database
from modelserve.users.models import Role

PREDICT = {"instances": [iris_instance()]}


def as_key(client: TestClient, key: str) -> TestClient:
    return TestClient(client.app, raise_server_exceptions=False, headers={"X-API-Key": key})


def test_keys_of_non_admins_cannot_manage_keys(client: TestClient, db: Database) -> None:
    register_iris(client, name="other")
    owner = create_user(db, "kim", Role.MAINTAINER)
    limited = as_key(client, create_key(db, owner, models=["other"], quota_per_minute=1))
    plain = as_key(client, create_key(db, owner))
    mine = plain.get("/v1/users/me").json()
    assert mine["username"] == "kim"
    for caller in (limited, plain):
        created = caller.post("/v1/api-keys", json={"name": "wider"})
        assert created.status_code == 403, created.text
        assert created.json()["code"] == "forbidden"
        assert caller.get("/v1/api-keys").status_code == 403
        assert caller.delete("/v1/api-keys/1").status_code == 403
    # A login session of the same user manages their keys.
    token = client.post("/v1/auth/token", data={"username": "kim", "password": PASSWORD})
    session = TestClient(
        client.app, headers={"Authorization": f"Bearer {token.json()['access_token']}"}
    )
    assert session.post("/v1/api-keys", json={"name": "from a login"}).status_code == 201
    assert session.get("/v1/api-keys").json()["count"] == 3


def test_an_admin_key_creates_only_keys_within_itself(client: TestClient, db: Database) -> None:
    admin = create_user(db, "ada", Role.ADMIN)
    soon = datetime.now(UTC) + timedelta(days=1)
    narrow = as_key(
        client, create_key(db, admin, models=["a", "b"], quota_per_minute=5, expires_at=soon)
    )
    later = (soon + timedelta(days=1)).isoformat()
    wider = [
        {"name": "any model", "quota_per_minute": 5, "expires_at": soon.isoformat()},
        {"name": "more models", "models": ["a", "c"], "quota_per_minute": 5},
        {"name": "no quota", "models": ["a"], "expires_at": soon.isoformat()},
        {"name": "more quota", "models": ["a"], "quota_per_minute": 6},
        {"name": "longer", "models": ["a"], "quota_per_minute": 5, "expires_at": later},
        {"name": "never expires", "models": ["a"], "quota_per_minute": 5},
    ]
    for body in wider:
        response = narrow.post("/v1/api-keys", json=body)
        assert response.status_code == 403, body["name"]
    within = {"name": "ok", "models": ["b"], "quota_per_minute": 2, "expires_at": soon.isoformat()}
    assert narrow.post("/v1/api-keys", json=within).status_code == 201
    # An unrestricted admin key (the fixture's) manages anyone's keys.
    assert client.post("/v1/api-keys", json={"name": "x", "user_id": admin}).status_code == 201


def test_a_key_limited_to_models_reads_only_their_predictions(
    client: TestClient, db: Database
) -> None:
    for name in ("iris", "other", "third"):
        register_iris(client, name=name)
    owner = create_user(db, "lena", Role.MAINTAINER)
    full = as_key(client, create_key(db, owner))
    for name in ("iris", "other", "third"):
        for _ in range(2):
            assert full.post(f"/v1/models/{name}/predict", json=PREDICT).status_code == 200
    limited = as_key(client, create_key(db, owner, models=["other", "third", "gone"]))
    seen = limited.get("/v1/predictions").json()
    assert sorted(p["model"] for p in seen["data"]) == ["other", "other", "third", "third"]
    assert limited.get("/v1/predictions", params={"model": "iris"}).status_code == 403
    # Pages of a restricted read are cut like any other.
    pages: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = limited.get("/v1/predictions", params=params).json()
        pages.extend(p["request_id"] for p in page["data"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert pages == [p["request_id"] for p in seen["data"]]
    assert len(full.get("/v1/predictions").json()["data"]) == 6
    assert limited.get("/v1/models/iris/compare", params={"a": 1, "b": 1}).status_code == 403
