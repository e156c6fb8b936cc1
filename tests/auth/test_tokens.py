"""Login, access tokens, refresh rotation, logout, and everything that must be refused."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from factories import PASSWORD, create_user
from fastapi.testclient import TestClient

from modelserve.auth.secret import load_secret_key
from modelserve.config import Settings
from modelserve.core.db import Database
from modelserve.users.models import Role


def login(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    return client.post("/v1/auth/token", data={"username": username, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_returns_tokens_with_the_right_claims(
    anon: TestClient, db: Database, settings: Settings
) -> None:
    user_id = create_user(db, "Alice", Role.MAINTAINER)
    response = login(anon, "alice")  # usernames are case-insensitive
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    claims = jwt.decode(
        body["access_token"],
        load_secret_key(settings),
        algorithms=["HS256"],
        audience="modelserve-api",
        issuer="modelserve",
    )
    assert claims["sub"] == str(user_id)
    assert claims["role"] == "maintainer"
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert {"jti", "sid"} <= set(claims)
    me = anon.get("/v1/users/me", headers=bearer(body["access_token"]))
    assert me.json()["username"] == "Alice"
    assert me.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in me.headers["content-security-policy"]


def test_unknown_user_and_wrong_password_look_the_same(anon: TestClient, db: Database) -> None:
    create_user(db, "bob")
    create_user(db, "carol", enabled=False)
    answers = [login(anon, "nobody"), login(anon, "bob", "wrong password"), login(anon, "carol")]
    assert {r.status_code for r in answers} == {401}
    assert len({r.text for r in answers}) == 1
    assert answers[0].json()["message"] == "Incorrect username or password."


def _forge(settings: Settings, **changes: Any) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": "1",
        "role": "admin",
        "sid": str(uuid.uuid4()),
        "jti": "x",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "iss": "modelserve",
        "aud": "modelserve-api",
    }
    key = changes.pop("key", load_secret_key(settings))
    algorithm = changes.pop("algorithm", "HS256")
    claims.update(changes)
    return jwt.encode(claims, key, algorithm=algorithm)


def test_bad_tokens_are_refused(anon: TestClient, db: Database, settings: Settings) -> None:
    create_user(db, "dave", Role.ADMIN)
    real = login(anon, "dave").json()["access_token"]
    header, payload, signature = real.split(".")
    unsigned = jwt.encode({"sub": "1", "role": "admin"}, key="", algorithm="none")
    bad = {
        "forged signature": _forge(settings, key=b"another-secret-key-another-secret-key"),
        "expired": _forge(settings, exp=int(time.time()) - 5, iat=int(time.time()) - 60),
        "alg none": unsigned,
        "alg none with real claims": f"{unsigned.split('.')[0]}.{payload}.",
        "wrong audience": _forge(settings, aud="someone-else"),
        "wrong issuer": _forge(settings, iss="evil"),
        "tampered payload": f"{header}.{payload[:-2]}AA.{signature}",
        "garbage": "not-a-token",
    }
    for label, token in bad.items():
        response = anon.get("/v1/users/me", headers=bearer(token))
        assert response.status_code == 401, label
        assert response.json()["code"] == "not_authenticated", label
    assert anon.get("/v1/users/me", headers=bearer(real)).status_code == 200


def test_refresh_rotates_and_reuse_revokes_the_family(anon: TestClient, db: Database) -> None:
    create_user(db, "erin")
    first = login(anon, "erin").json()
    second = anon.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    second_tokens = second.json()
    assert second_tokens["refresh_token"] != first["refresh_token"]
    assert (
        anon.get("/v1/users/me", headers=bearer(second_tokens["access_token"])).status_code == 200
    )
    reuse = anon.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    # The whole family is dead: the newest refresh token and its access token too.
    after = anon.post("/v1/auth/refresh", json={"refresh_token": second_tokens["refresh_token"]})
    assert after.status_code == 401
    time.sleep(2.1)  # auth_cache_seconds: the bound on how fast revocation reaches a process
    assert (
        anon.get("/v1/users/me", headers=bearer(second_tokens["access_token"])).status_code == 401
    )
    assert anon.post("/v1/auth/refresh", json={"refresh_token": "nope"}).status_code == 401


def test_logout_revokes(make_client: Any, db: Database) -> None:
    create_user(db, "frank")
    with make_client(auth_cache_seconds=0) as admin:
        client = TestClient(admin.app)
        tokens = login(client, "frank").json()
        assert (
            client.post(
                "/v1/auth/logout",
                json={"refresh_token": tokens["refresh_token"]},
                headers=bearer(tokens["access_token"]),
            ).status_code
            == 204
        )
        me = client.get("/v1/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 401
        refresh = client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refresh.status_code == 401


def test_disabling_a_user_stops_their_live_token(
    client: TestClient, anon: TestClient, db: Database
) -> None:
    user_id = create_user(db, "gina")
    token = login(anon, "gina").json()["access_token"]
    assert anon.get("/v1/users/me", headers=bearer(token)).status_code == 200
    assert client.patch(f"/v1/users/{user_id}", json={"enabled": False}).status_code == 200
    time.sleep(2.1)  # auth_cache_seconds
    response = anon.get("/v1/users/me", headers=bearer(token))
    assert response.status_code == 401
    assert login(anon, "gina").status_code == 401


def test_role_change_takes_effect_on_live_token(make_client: Any, db: Database) -> None:
    user_id = create_user(db, "hank", Role.ADMIN)
    with make_client(auth_cache_seconds=0) as admin:
        client = TestClient(admin.app)
        token = login(client, "hank").json()["access_token"]
        assert client.get("/v1/users", headers=bearer(token)).status_code == 200
        admin.patch(f"/v1/users/{user_id}", json={"role": "user"})
        assert client.get("/v1/users", headers=bearer(token)).status_code == 403
        both = admin.get("/v1/users/me", headers=bearer(token))
        assert both.status_code == 400


def test_login_rate_limit_answers_429_and_recovers(make_client: Any, db: Database) -> None:
    create_user(db, "ivy")
    window = 10  # several argon2 hashes must fit in one window on a busy machine
    with make_client(login_limit_per_user=2, login_window_seconds=window) as client:
        time.sleep(window - time.time() % window)  # start at a window boundary
        assert login(client, "ivy", "bad").status_code == 401
        assert login(client, "ivy", "bad").status_code == 401
        limited = login(client, "ivy")
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        unknown = [login(client, "ghost", "bad").status_code for _ in range(3)]
        assert unknown == [401, 401, 429]  # unknown names are limited alike: no enumeration
        time.sleep(window - time.time() % window + 0.05)
        assert login(client, "ivy").status_code == 200


def test_open_registration_reveals_nothing(
    make_client: Any, anon: TestClient, db: Database
) -> None:
    body = {"username": "newbie", "email": "new@example.com", "password": PASSWORD}
    closed = anon.post("/v1/auth/register", json=body)
    assert closed.status_code == 403
    create_user(db, "taken")
    with make_client(open_registration=True) as client:
        fresh = client.post("/v1/auth/register", json=body)
        duplicate = client.post("/v1/auth/register", json=body | {"email": "other@example.com"})
        taken = client.post("/v1/auth/register", json=body | {"username": "TAKEN"})
        assert fresh.status_code == duplicate.status_code == taken.status_code == 202
        assert fresh.json() == duplicate.json() == taken.json()
        assert login(client, "newbie").status_code == 200


@pytest.mark.parametrize("short", ["", "tooshort"])
def test_secret_key_file_and_length(settings: Settings, short: str) -> None:
    from pydantic import ValidationError

    key = load_secret_key(settings)
    path = settings.data_dir / "secret_key"
    assert len(key) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_secret_key(settings) == key  # survives restarts
    with pytest.raises(ValidationError):
        Settings(secret_key=short)
    assert load_secret_key(Settings(secret_key="k" * 32)) == b"k" * 32


def test_huge_subject_in_a_validly_signed_token_is_a_401(
    anon: TestClient, db: Database, settings: Settings
) -> None:
    create_user(db, "zed")
    real = login(anon, "zed").json()["access_token"]
    claims = jwt.decode(real, options={"verify_signature": False})
    for sub in (str(10**30), "-1", "0", "1e3"):
        token = _forge(settings, sub=sub, sid=claims["sid"])
        response = anon.get("/v1/users/me", headers=bearer(token))
        assert response.status_code == 401, sub
        assert response.json()["code"] == "not_authenticated", sub
