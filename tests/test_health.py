"""Liveness and readiness."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from modelserve.app import create_app
from modelserve.config import Settings


def test_healthz_and_readyz_when_migrated(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "database": "ok",
        "migrations": "head",
        "prediction_log": "ok",
        "prediction_log_restarts": 0,
    }


def test_readyz_503_when_not_migrated(empty_database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=empty_database_url)
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
        assert client.get("/healthz").status_code == 200
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "not_ready"
    assert body["details"]["database"] == "ok"
    assert body["details"]["migrations"].startswith("at None")


def test_readyz_503_when_database_unreachable(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=url))) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["details"]["database"].startswith("unreachable")


def test_v2_health_is_public_like_healthz(anon: TestClient) -> None:
    # Orchestrators probe without credentials, as they do /healthz and /readyz.
    assert anon.get("/v2/health/live").json() == {"live": True}
    ready = anon.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    assert anon.get("/v2").status_code == 401


def test_v2_ready_503_when_not_migrated(empty_database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=empty_database_url)
    with TestClient(create_app(settings)) as client:
        live = client.get("/v2/health/live")
        ready = client.get("/v2/health/ready")
    assert (live.status_code, live.json()) == (200, {"live": True})
    assert (ready.status_code, ready.json()) == (503, {"ready": False})
