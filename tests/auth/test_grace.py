"""The grace window: with the database unreachable, a credential this process verified within
``auth_grace_seconds`` is accepted from memory; 0 fails closed; once the database answers,
revocation applies again. The database goes away behind a TCP proxy (PostgreSQL only: an
SQLite file cannot become unreachable)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from factories import create_key, create_user
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.engine import make_url
from tcpproxy import TcpProxy

from modelserve.app import create_app
from modelserve.auth.models import ApiKey
from modelserve.config import Settings
from modelserve.core.clock import utcnow
from modelserve.core.db import Database
from modelserve.users.models import Role


def status_when_back(client: TestClient, key: str) -> int:
    """What an admin request answers once the database is back: polled until a 401 (for at most
    15 s), since for a second after a failure lookups do not try the database."""
    deadline = time.monotonic() + 15
    while True:
        status = client.get("/metrics", headers={"X-API-Key": key}).status_code
        if status == 401 or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


@pytest.mark.parametrize("grace", [300.0, 0.0])
def test_verified_callers_ride_out_an_outage_for_the_grace_window(
    backend: str, database_url: str, db: Database, tmp_path: Path, grace: float
) -> None:
    if backend != "postgresql":
        pytest.skip("needs a database that can become unreachable")
    target = make_url(database_url)
    key = create_key(db, create_user(db, "gus", Role.ADMIN))
    stranger = create_key(db, create_user(db, "stan", Role.ADMIN))
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        proxied = target.set(host="127.0.0.1", port=proxy.port)
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=proxied.render_as_string(hide_password=False),
            auth_cache_seconds=0,  # every request goes to the database while it answers
            auth_grace_seconds=grace,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            assert client.get("/metrics", headers={"X-API-Key": key}).status_code == 200
            proxy.cut()
            try:
                known = client.get("/metrics", headers={"X-API-Key": key})
                unknown = client.get("/metrics", headers={"X-API-Key": stranger})
                assert client.get("/healthz").status_code == 200
            finally:
                proxy.restore()
            assert known.status_code == (200 if grace else 503), known.text
            assert unknown.status_code == 503
            assert unknown.json()["code"] == "database_unavailable"
            assert int(unknown.headers["retry-after"]) >= 1
            with db.transaction() as session:  # revoked while the database answers: refused
                session.execute(update(ApiKey).values(revoked_at=utcnow()))
            assert status_when_back(client, key) == 401
