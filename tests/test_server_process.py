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
from factories import fit_iris, iris_instance, iris_schema, to_bytes

from modelserve.config import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(empty_database_url: str, tmp_path: Path) -> Iterator[str]:
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
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)
        log_file.close()


def test_served_process_registers_predicts_and_logs(server: str) -> None:
    import orjson

    metadata = orjson.dumps(
        {"name": "iris", "input_schema": iris_schema(), "alias": "production"}
    ).decode()
    created = httpx.post(
        f"{server}/v1/models",
        data={"metadata": metadata},
        files={"file": ("m.skops", to_bytes(fit_iris(), "skops"))},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    answer = httpx.post(
        f"{server}/v1/models/iris/predict", json={"instances": [iris_instance(0)]}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == ["setosa"]
    logged = httpx.get(f"{server}/v1/predictions", params={"model": "iris"}).json()["data"]
    assert logged[0]["request_id"] == answer.json()["request_id"]
    missing_header = httpx.post(f"{server}/v1/models/iris/predict", content=b"", timeout=30)
    assert missing_header.status_code == 400
    assert missing_header.json()["code"] == "malformed_json"


def test_settings_default_to_sqlite_in_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'd').resolve()}/modelserve.db"
    assert Settings(database_url="postgresql://u@h/db").resolved_database_url.startswith(
        "postgresql+psycopg://"
    )
