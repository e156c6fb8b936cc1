"""Every endpoint against anonymous, user, maintainer, admin, disabled user, revoked key and a
maintainer's key restricted to another model: allowed, or exactly 401 (who are you?) versus 403
(not allowed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from factories import (
    create_key,
    create_user,
    fit_iris,
    iris_instance,
    iris_schema,
    register_iris,
    to_bytes,
)
from fastapi.testclient import TestClient

from modelserve.audit.service import CLI_ACTOR
from modelserve.auth.keys import ApiKeyService
from modelserve.core.db import Database
from modelserve.users.models import Role
from modelserve.users.schemas import UserUpdate
from modelserve.users.service import UserService

PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("POST", "/v1/auth/token"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("POST", "/v1/auth/register"),
}
Call = Callable[[TestClient, dict[str, Any]], Any]


def _upload(client: TestClient, ids: dict[str, Any]) -> Any:
    meta = orjson.dumps({"name": "iris", "input_schema": iris_schema()}).decode()
    return client.post(
        "/v1/models", data={"metadata": meta}, files={"file": ("m.skops", ids["artifact"])}
    )


PREDICT = {"instances": [iris_instance()]}
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 1, 1, 1]}]}
# (method, route path, minimum role, how to call it)
MATRIX: list[tuple[str, str, Role, Call]] = [
    ("GET", "/v1/users/me", Role.USER, lambda c, i: c.get("/v1/users/me")),
    (
        "POST",
        "/v1/users",
        Role.ADMIN,
        lambda c, i: c.post(
            "/v1/users", json={"username": f"new-{i['who']}", "password": "a long password"}
        ),
    ),
    ("GET", "/v1/users", Role.ADMIN, lambda c, i: c.get("/v1/users")),
    ("GET", "/v1/users/{user_id}", Role.ADMIN, lambda c, i: c.get(f"/v1/users/{i['victim']}")),
    (
        "PATCH",
        "/v1/users/{user_id}",
        Role.ADMIN,
        lambda c, i: c.patch(f"/v1/users/{i['victim']}", json={"email": "v@example.com"}),
    ),
    (
        "DELETE",
        "/v1/users/{user_id}",
        Role.ADMIN,
        lambda c, i: c.delete(f"/v1/users/{i['victim']}"),
    ),
    ("POST", "/v1/api-keys", Role.USER, lambda c, i: c.post("/v1/api-keys", json={"name": "k"})),
    ("GET", "/v1/api-keys", Role.USER, lambda c, i: c.get("/v1/api-keys")),
    (
        "DELETE",
        "/v1/api-keys/{key_id}",
        Role.USER,
        lambda c, i: c.delete(f"/v1/api-keys/{i['victim_key']}"),
    ),
    ("GET", "/v1/models", Role.USER, lambda c, i: c.get("/v1/models")),
    ("POST", "/v1/models", Role.MAINTAINER, _upload),
    ("GET", "/v1/models/{name}", Role.USER, lambda c, i: c.get("/v1/models/iris")),
    (
        "GET",
        "/v1/models/{name}/versions/{version}",
        Role.USER,
        lambda c, i: c.get("/v1/models/iris/versions/1"),
    ),
    (
        "PUT",
        "/v1/models/{name}/aliases/{alias}",
        Role.MAINTAINER,
        lambda c, i: c.put("/v1/models/iris/aliases/staging", json={"version": 1}),
    ),
    (
        "POST",
        "/v1/models/{name}/aliases/{alias}/rollback",
        Role.MAINTAINER,
        lambda c, i: c.post("/v1/models/iris/aliases/production/rollback"),
    ),
    (
        "PUT",
        "/v1/models/{name}/serving",
        Role.MAINTAINER,
        lambda c, i: c.put("/v1/models/iris/serving", json={"runtime": "sklearn"}),
    ),
    ("GET", "/v1/models/{name}/traffic", Role.USER, lambda c, i: c.get("/v1/models/iris/traffic")),
    (
        "PUT",
        "/v1/models/{name}/traffic",
        Role.MAINTAINER,
        lambda c, i: c.put("/v1/models/iris/traffic", json={"shadow": {"version": 1}}),
    ),
    (
        "GET",
        "/v1/models/{name}/compare",
        Role.MAINTAINER,
        lambda c, i: c.get("/v1/models/iris/compare?a=1&b=1"),
    ),
    (
        "POST",
        "/v1/models/{name}/predict",
        Role.USER,
        lambda c, i: c.post("/v1/models/iris/predict", json=PREDICT),
    ),
    (
        "POST",
        "/v1/models/{name}/versions/{version}/predict",
        Role.USER,
        lambda c, i: c.post("/v1/models/iris/versions/1/predict", json=PREDICT),
    ),
    (
        "POST",
        "/v1/models/{name}/aliases/{alias}/predict",
        Role.USER,
        lambda c, i: c.post("/v1/models/iris/aliases/production/predict", json=PREDICT),
    ),
    ("GET", "/v1/predictions", Role.USER, lambda c, i: c.get("/v1/predictions")),
    ("GET", "/v1/audit", Role.ADMIN, lambda c, i: c.get("/v1/audit")),
    ("GET", "/metrics", Role.ADMIN, lambda c, i: c.get("/metrics")),
    ("GET", "/v2", Role.USER, lambda c, i: c.get("/v2")),
    ("GET", "/v2/models/{name}", Role.USER, lambda c, i: c.get("/v2/models/iris")),
    (
        "GET",
        "/v2/models/{name}/versions/{version}",
        Role.USER,
        lambda c, i: c.get("/v2/models/iris/versions/1"),
    ),
    ("GET", "/v2/models/{name}/ready", Role.USER, lambda c, i: c.get("/v2/models/iris/ready")),
    (
        "GET",
        "/v2/models/{name}/versions/{version}/ready",
        Role.USER,
        lambda c, i: c.get("/v2/models/iris/versions/1/ready"),
    ),
    (
        "POST",
        "/v2/models/{name}/infer",
        Role.USER,
        lambda c, i: c.post("/v2/models/iris/infer", json=V2_BODY),
    ),
    (
        "POST",
        "/v2/models/{name}/versions/{version}/infer",
        Role.USER,
        lambda c, i: c.post("/v2/models/iris/versions/1/infer", json=V2_BODY),
    ),
    ("POST", "/v2/repository/index", Role.USER, lambda c, i: c.post("/v2/repository/index")),
    (
        "POST",
        "/v2/repository/models/{name}/load",
        Role.MAINTAINER,
        lambda c, i: c.post("/v2/repository/models/iris/load"),
    ),
    (
        "POST",
        "/v2/repository/models/{name}/unload",
        Role.MAINTAINER,
        lambda c, i: c.post("/v2/repository/models/iris/unload"),
    ),
]
IDENTITIES = ["anonymous", "disabled", "revoked", "user", "maintainer", "admin", "restricted"]
KEY_MANAGEMENT = {"/v1/api-keys", "/v1/api-keys/{key_id}"}
"""Routes only login sessions and admins' keys may use (every identity here is an API key)."""


@pytest.fixture
def world(client: TestClient, db: Database) -> dict[str, Any]:
    """Keys for every identity, a registered model and things to act on."""
    register_iris(client, alias="production")
    register_iris(client, alias="production")  # so production can be rolled back (and forth)
    keys: dict[str, str | None] = {"anonymous": None}
    for role in (Role.USER, Role.MAINTAINER, Role.ADMIN):
        keys[role.value] = create_key(db, create_user(db, f"the-{role.value}", role))
    disabled = create_user(db, "the-disabled", Role.ADMIN)
    keys["disabled"] = create_key(db, disabled)
    keys["restricted"] = create_key(
        db, create_user(db, "the-restricted", Role.MAINTAINER), models=["other"]
    )
    revoked_owner = create_user(db, "the-revoked", Role.ADMIN)
    keys["revoked"] = create_key(db, revoked_owner)
    with db.transaction() as session:
        UserService(session).update(disabled, UserUpdate(enabled=False), CLI_ACTOR)
        owned = ApiKeyService(session).list(revoked_owner).data[0]
        ApiKeyService(session).revoke(owned.id, None, CLI_ACTOR)
    victim = create_user(db, "victim")
    create_key(db, victim)
    with db.sessions() as session:
        victim_key = ApiKeyService(session).list(victim).data[0].id
    return {
        "keys": keys,
        "victim": victim,
        "victim_key": victim_key,
        "artifact": to_bytes(fit_iris(), "skops"),
    }


def expected(identity: str, path: str, needs: Role) -> set[int]:
    if identity in ("anonymous", "disabled", "revoked"):
        return {401}
    role = Role.MAINTAINER if identity == "restricted" else Role(identity)
    if not role.includes(needs):
        return {403}
    if path in KEY_MANAGEMENT and role is not Role.ADMIN:
        return {403}
    # The restricted key may use model "other" only; every per-model route here names "iris".
    if identity == "restricted" and (
        "{name}" in path or (path == "/v1/models" and needs is not Role.USER)
    ):
        return {403}
    return {200, 201, 204, 404}


def test_every_endpoint_for_every_identity(client: TestClient, world: dict[str, Any]) -> None:
    failures = []
    for identity in IDENTITIES:
        key = world["keys"][identity]
        caller = TestClient(client.app, headers={"X-API-Key": key} if key else {})
        ids = {**world, "who": identity}
        for method, path, needs, call in MATRIX:
            status = call(caller, ids).status_code
            if status not in expected(identity, path, needs):
                failures.append((identity, method, path, status))
    assert failures == []


def test_matrix_covers_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    covered = {(method, path) for method, path, _, _ in MATRIX} | PUBLIC
    assert routes == covered


def test_401_carries_www_authenticate_and_403_does_not(
    anon: TestClient, world: dict[str, Any]
) -> None:
    unauthenticated = anon.get("/v1/models")
    assert unauthenticated.headers["www-authenticate"] == "Bearer"
    user = TestClient(anon.app, headers={"X-API-Key": world["keys"]["user"]})
    forbidden = user.get("/v1/audit")
    assert forbidden.status_code == 403
    assert "www-authenticate" not in forbidden.headers
    assert (
        anon.get("/v1/models", headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    )
