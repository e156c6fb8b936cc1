"""A real ``modelserve serve`` process: applies migrations at start, serves and logs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from factories import create_key, create_user, fit_iris, iris_instance, iris_schema, to_bytes

from modelserve.config import Settings
from modelserve.core.db import Database
from modelserve.users.models import Role


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(empty_database_url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``modelserve serve`` on an unmigrated database, in its own process."""
    port = free_port()
    env = os.environ | {
        "MODELSERVE_DATABASE_URL": empty_database_url,
        "MODELSERVE_DATA_DIR": str(tmp_path / "data"),
    }
    log_path = tmp_path / "server.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "modelserve", "serve", "--port", str(port)],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.2)
        else:
            pytest.fail("server never became ready")
        db = Database(empty_database_url, pool_size=1)
        key = create_key(db, create_user(db, "ops", Role.MAINTAINER))
        db.dispose()
        yield base, {"X-API-Key": key}
    finally:
        process.terminate()
        process.wait(timeout=20)
        log_file.close()


def test_served_process_registers_predicts_and_logs(
    server: tuple[str, dict[str, str]],
) -> None:
    import orjson

    base, auth = server
    metadata = {"name": "iris", "input_schema": iris_schema(), "alias": "production"}
    with httpx.Client(base_url=base, headers=auth, timeout=30) as http:
        created = http.post(
            "/v1/models",
            data={"metadata": orjson.dumps(metadata).decode()},
            files={"file": ("m.skops", to_bytes(fit_iris(), "skops"))},
        )
        assert created.status_code == 201, created.text
        answer = http.post("/v1/models/iris/predict", json={"instances": [iris_instance(0)]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == ["setosa"]
        logged = http.get("/v1/predictions", params={"model": "iris"}).json()["data"]
        assert logged[0]["request_id"] == answer.json()["request_id"]
        assert logged[0]["caller"].startswith("ops (msk_")
        empty_body = http.post("/v1/models/iris/predict", content=b"")
        assert empty_body.status_code == 400
        assert empty_body.json()["code"] == "malformed_json"
    missing_header = httpx.post(f"{base}/v1/models/iris/predict", json={"instances": []})
    assert missing_header.status_code == 401
    assert missing_header.headers["www-authenticate"] == "Bearer"


def test_settings_default_to_sqlite_in_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'd').resolve()}/modelserve.db"
    assert Settings(database_url="postgresql://u@h/db").resolved_database_url.startswith(
        "postgresql+psycopg://"
    )
