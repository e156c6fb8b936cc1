"""User administration over HTTP, ownership of predictions, and deletion that keeps the log."""

from __future__ import annotations

import time
from typing import Any

from factories import PASSWORD, create_key, create_user, iris_instance, register_iris
from fastapi.testclient import TestClient

from modelserve.core.db import Database
from modelserve.users.models import Role


def as_key(client: TestClient, key: str) -> TestClient:
    return TestClient(client.app, headers={"X-API-Key": key})


def test_create_list_show_update(client: TestClient) -> None:
    created = client.post(
        "/v1/users",
        json={
            "username": "Zed",
            "email": "Zed@Example.com",
            "password": PASSWORD,
            "role": "maintainer",
        },
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert set(user) == {"id", "username", "email", "role", "enabled", "created_at"}
    for clash in (
        {"username": "zed", "email": "other@example.com"},
        {"username": "other", "email": "zed@example.COM"},
    ):
        duplicate = client.post("/v1/users", json=clash | {"password": PASSWORD})
        assert duplicate.status_code == 409
    assert client.post("/v1/users", json={"username": "short", "password": "x"}).status_code == 422
    assert [u["username"] for u in client.get("/v1/users").json()["data"]] == ["root-admin", "Zed"]
    changed = client.patch(f"/v1/users/{user['id']}", json={"role": "user", "enabled": False})
    assert changed.json()["role"] == "user"
    assert changed.json()["enabled"] is False
    assert client.get(f"/v1/users/{user['id']}").json()["enabled"] is False
    assert client.get("/v1/users/999").status_code == 404
    assert client.patch("/v1/users/999", json={"enabled": True}).status_code == 404


def test_password_change_applies_to_login(
    client: TestClient, anon: TestClient, db: Database
) -> None:
    user_id = create_user(db, "pat")
    client.patch(f"/v1/users/{user_id}", json={"password": "a brand new password"})
    form = {"username": "pat", "password": "a brand new password"}
    assert anon.post("/v1/auth/token", data=form).status_code == 200
    assert anon.post("/v1/auth/token", data=form | {"password": PASSWORD}).status_code == 401


def test_last_admin_cannot_be_removed(client: TestClient) -> None:
    me = client.get("/v1/users/me").json()
    assert client.patch(f"/v1/users/{me['id']}", json={"enabled": False}).status_code == 409
    assert client.patch(f"/v1/users/{me['id']}", json={"role": "user"}).status_code == 409
    assert client.delete(f"/v1/users/{me['id']}").status_code == 409


def test_users_see_only_their_predictions_and_deletion_keeps_them(
    client: TestClient, db: Database
) -> None:
    register_iris(client)
    alice = create_user(db, "alice")
    alice_client = as_key(client, create_key(db, alice))
    bob_client = as_key(client, create_key(db, create_user(db, "bob")))
    payload = {"instances": [iris_instance()]}
    mine = alice_client.post("/v1/models/iris/predict", json=payload).json()["request_id"]
    bob_client.post("/v1/models/iris/predict", json=payload)
    client.post("/v1/models/iris/predict", json=payload)
    alice_view = alice_client.get("/v1/predictions").json()["data"]
    assert [r["request_id"] for r in alice_view] == [mine]
    assert alice_view[0]["user_id"] == alice
    assert alice_view[0]["caller"].startswith("alice (msk_")
    assert len(client.get("/v1/predictions").json()["data"]) == 3
    assert client.delete(f"/v1/users/{alice}").status_code == 204
    time.sleep(2.1)  # auth_cache_seconds
    assert alice_client.get("/v1/predictions").status_code == 401
    kept = [r for r in client.get("/v1/predictions").json()["data"] if r["request_id"] == mine]
    assert kept[0]["user_id"] is None
    assert kept[0]["caller"].startswith("alice")


def test_audit_log_records_security_events(
    client: TestClient, anon: TestClient, db: Database
) -> None:
    user_id = create_user(db, "quinn")
    anon.post("/v1/auth/token", data={"username": "quinn", "password": "wrong"})
    anon.post("/v1/auth/token", data={"username": "quinn", "password": PASSWORD})
    client.patch(f"/v1/users/{user_id}", json={"role": "maintainer"})
    client.patch(f"/v1/users/{user_id}", json={"enabled": False})
    key = client.post("/v1/api-keys", json={"name": "ci"}).json()
    client.delete(f"/v1/api-keys/{key['id']}")
    register_iris(client)
    client.put("/v1/models/iris/aliases/production", json={"version": 1})
    events = client.get("/v1/audit", params={"limit": 100}).json()["data"]
    actions = [e["action"] for e in reversed(events)]
    for action in (
        "user.created",
        "login.failed",
        "login.succeeded",
        "user.role_changed",
        "user.disabled",
        "api_key.created",
        "api_key.revoked",
        "model.registered",
        "model.alias_moved",
    ):
        assert action in actions, action
    role_change = next(e for e in events if e["action"] == "user.role_changed")
    assert role_change["details"] == {"before": "user", "after": "maintainer"}
    assert role_change["actor"].startswith("root-admin")
    failed = client.get("/v1/audit", params={"action": "login.failed"}).json()["data"]
    assert [e["actor"] for e in failed] == ["quinn"]
    assert failed[0]["address"] == "testclient"


def test_roles_enum_is_the_contract(client: TestClient) -> None:
    body: dict[str, Any] = {"username": "x1", "password": PASSWORD, "role": "superuser"}
    assert client.post("/v1/users", json=body).status_code == 422
    assert {r.value for r in Role} == {"user", "maintainer", "admin"}
