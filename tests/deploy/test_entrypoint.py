"""The image's entrypoint script as a process, with the image's environment: a read-only data
dir is refused clearly, secrets come from files, SIGTERM flushes the prediction log."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import jwt
import pytest
from factories import create_key, create_user, iris_instance, register_iris
from imagerun import entrypoint, image_dirs, read_only_mount
from processes import free_port
from sqlalchemy import func, inspect, select

from modelserve.core.db import Database
from modelserve.predictions.models import Prediction
from modelserve.users.models import Role

pytestmark = pytest.mark.slow

SECRET = "entrypoint-secret-" + "x" * 40


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"entrypoint exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"never ready:\n{log.read_text()}")


def test_a_read_only_data_dir_is_refused_before_anything_runs(pg_empty_url: str) -> None:
    with image_dirs() as base:
        data, tmp = _mkdir(base / "data", 0o755), _mkdir(base / "tmp", 0o700)
        log = base / "out.log"
        process = entrypoint(
            [], data_dir=data, tmp_dir=tmp, port=free_port(), log=log,
            prefix=read_only_mount(data), MODELSERVE_DATABASE_URL=pg_empty_url,
        )  # fmt: skip
        assert process.wait(timeout=60) == 1
        output = log.read_text()
    assert f"The data dir {data} is not writable" in output
    assert "Mount a writable volume there" in output
    assert "Traceback" not in output
    db = Database(pg_empty_url, pool_size=1)
    try:
        assert inspect(db.engine).get_table_names() == []  # no migration ran
    finally:
        db.dispose()


def _mkdir(path: Path, mode: int) -> Path:
    path.mkdir(mode=mode)
    return path


def test_secrets_from_files_then_sigterm_flushes_the_log(pg_empty_url: str) -> None:
    with image_dirs() as base:
        data, tmp, secrets = (_mkdir(base / n, 0o700) for n in ("data", "tmp", "secrets"))
        key_file = secrets / "secret_key"
        key_file.write_text(SECRET + "\n")
        url_file = secrets / "database_url"
        url_file.write_text(pg_empty_url.replace("postgresql+psycopg://", "postgresql://") + "\n")
        for path in (key_file, url_file):
            path.chmod(0o400)
        port, log = free_port(), base / "out.log"
        process = entrypoint(
            [], data_dir=data, tmp_dir=tmp, port=port, log=log,
            MODELSERVE_SECRET_KEY_FILE=str(key_file),
            MODELSERVE_DATABASE_URL_FILE=str(url_file),
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, process, log)
            db = Database(pg_empty_url, pool_size=2)
            create_user(db, "ana", Role.MAINTAINER, password="a long password")
            headers = {"X-API-Key": create_key(db, create_user(db, "ops", Role.MAINTAINER))}
            with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                token = client.post(
                    "/v1/auth/token", data={"username": "ana", "password": "a long password"}
                ).json()["access_token"]
                # Signed with the key from the file.
                claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="modelserve-api")
                assert claims["iss"] == "modelserve"
                register_iris(client)  # type: ignore[arg-type]
                sent = 40
                for row in range(sent):
                    body = {"instances": [iris_instance(row % 150)]}
                    answer = client.post("/v1/models/iris/predict", json=body)
                    assert answer.status_code == 200, answer.text
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        output = log.read_text()
        spill = list((data / "spill").glob("*.jsonl"))
    try:
        with db.transaction() as session:
            logged = session.scalar(select(func.count()).select_from(Prediction))
    finally:
        db.dispose()
    assert logged == sent
    assert spill == []
    assert SECRET not in output
    assert pg_empty_url.split("://", 1)[1] not in output
