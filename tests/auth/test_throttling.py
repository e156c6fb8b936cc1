"""Login throttling that slows an attacker's address without locking the owner out, failed API
keys throttled per address and audited in aggregate, and disabling a user ending their logins."""

from __future__ import annotations

import time
from typing import Any

from factories import PASSWORD, create_user
from fastapi.testclient import TestClient
from sqlalchemy import select

from modelserve.audit.models import AuditEvent
from modelserve.core.db import Database


def from_address(client: TestClient, address: str, **headers: str) -> TestClient:
    """A client on the same app whose requests come from ``address``."""
    return TestClient(
        client.app, raise_server_exceptions=False, client=(address, 50000), headers=headers
    )


def login(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    return client.post("/v1/auth/token", data={"username": username, "password": password})


def test_wrong_passwords_from_one_address_do_not_lock_the_owner_out(
    make_client: Any, db: Database
) -> None:
    create_user(db, "olga")
    hour = 3600  # one window for the whole test: start well inside one
    if hour - time.time() % hour < 120:
        time.sleep(hour - time.time() % hour)
    limits = {"login_limit_per_user": 3, "login_limit_per_address": 100}
    with make_client(login_window_seconds=hour, **limits) as client:
        attacker = from_address(client, "203.0.113.9")
        tries = [login(attacker, "olga", "guess").status_code for _ in range(10)]
        assert tries[:3] == [401, 401, 401]
        assert set(tries[3:]) == {429}
        limited = login(attacker, "olga")  # even the right password: this address must wait
        assert limited.status_code == 429
        assert int(limited.json()["details"]["retry_after"]) >= 1
        owner = from_address(client, "198.51.100.7")
        assert login(owner, "olga").status_code == 200


def test_one_address_is_slowed_across_usernames(make_client: Any, db: Database) -> None:
    create_user(db, "pete")
    hour = 3600
    if hour - time.time() % hour < 120:
        time.sleep(hour - time.time() % hour)
    limits = {"login_limit_per_user": 100, "login_limit_per_address": 4}
    with make_client(login_window_seconds=hour, **limits) as client:
        sprayer = from_address(client, "203.0.113.10")
        tries = [login(sprayer, f"user{i}", "guess").status_code for i in range(6)]
        assert tries == [401, 401, 401, 401, 429, 429]
        assert login(from_address(client, "198.51.100.8"), "pete").status_code == 200


def test_wrong_api_keys_are_throttled_per_address_and_audited_in_aggregate(
    make_client: Any, db: Database
) -> None:
    window = 4
    with make_client(key_failures_per_address=5, key_failure_window_seconds=window) as client:
        time.sleep(window - time.time() % window)  # start at a window boundary
        guesser = from_address(client, "203.0.113.11")
        statuses = [
            guesser.get("/v1/models", headers={"X-API-Key": f"msk_{i:08x}_guess"}).status_code
            for i in range(8)
        ]
        assert statuses == [401] * 5 + [429] * 3
        limited = guesser.get("/v1/models", headers={"X-API-Key": "msk_00000000_guess"})
        assert limited.json()["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) == limited.json()["details"]["retry_after"]
        # Another address is not affected; the guesser's is again once the window is over.
        assert client.get("/v1/models").status_code == 200
        time.sleep(window - time.time() % window + 0.3)
        assert guesser.get("/v1/models", headers={"X-API-Key": "msk_00000000_x"}).status_code == 401
        client.app.state.modelserve.authenticator.close()
        with db.sessions() as session:
            events = session.scalars(
                select(AuditEvent).where(AuditEvent.action == "api_key.rejected")
            ).all()
        by_window = sorted(e.details["count"] for e in events if e.address == "203.0.113.11")
        assert by_window == [1, 9]  # one event per address per window, with its count


def test_disabling_a_user_ends_their_sessions(
    client: TestClient, anon: TestClient, db: Database
) -> None:
    user_id = create_user(db, "ruth")
    tokens = login(anon, "ruth").json()
    assert client.patch(f"/v1/users/{user_id}", json={"enabled": False}).status_code == 200
    assert client.patch(f"/v1/users/{user_id}", json={"enabled": True}).status_code == 200
    time.sleep(2.1)  # auth_cache_seconds
    me = anon.get("/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 401
    again = anon.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401
    assert login(anon, "ruth").status_code == 200  # the account itself works again
