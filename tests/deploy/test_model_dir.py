"""The model-directory mode (KServe's layout in /mnt/models) and authentication for it: a
mounted API key, or auth turned off for a mesh (explicit, warned about)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import (
    IRIS_FEATURES,
    fit_iris,
    iris_instance,
    iris_schema,
    register_iris,
    to_bytes,
)
from fastapi.testclient import TestClient
from processes import free_port
from sqlalchemy import func, select

from modelserve.core.db import Database
from modelserve.predictions.models import Prediction
from modelserve.registry.model_dir import ModelDirError, register_model_dir
from modelserve.server.startup import AUTH_DISABLED_WARNING, MESH_USER

ROWS = [iris_instance(0), iris_instance(100)]


def model_dir(path: Path, fmt: str = "skops") -> Path:
    """A directory as KServe's storage initializer lays it out."""
    path.mkdir(parents=True, exist_ok=True)
    (path / f"model.{fmt}").write_bytes(to_bytes(fit_iris(), fmt))
    (path / "schema.json").write_text(json.dumps(iris_schema()))
    return path


def v2_body(rows: list[dict[str, float]] = ROWS) -> dict[str, Any]:
    inputs = [
        {"name": n, "shape": [len(rows)], "datatype": "FP64", "data": [r[n] for r in rows]}
        for n in IRIS_FEATURES
    ]
    return {"inputs": inputs}


def mounted_key(path: Path) -> tuple[str, Path]:
    key = f"msk_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
    path.write_text(key + "\n")
    path.chmod(0o400)
    return key, path


@pytest.mark.slow
def test_serve_model_dir_with_kserve_arguments_and_a_mounted_key(tmp_path: Path) -> None:
    directory = model_dir(tmp_path / "mnt" / "models")
    key, key_file = mounted_key(tmp_path / "api_key")
    port, data, log = free_port(), tmp_path / "data", tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")} | {
        "MODELSERVE_DATA_DIR": str(data),  # the embedded SQLite default: no database set up
        "MODELSERVE_API_KEY_FILE": str(key_file),
        "COLUMNS": "400",
    }
    args = ["--model_name=iris", f"--model_dir={directory}", f"--http_port={port}"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelserve", "serve", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, log)
        assert httpx.post(f"{base}/v2/models/iris/infer", json=v2_body()).status_code == 401
        headers = {"X-API-Key": key}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            answer = client.post("/v2/models/iris/infer", json=v2_body())
            assert answer.status_code == 200, answer.text
            outputs = {o["name"]: o for o in answer.json()["outputs"]}
            assert outputs["predict"]["data"] == ["setosa", "virginica"]
            v1 = client.post("/v1/models/iris/predict", json={"instances": ROWS})
            assert v1.status_code == 200
            assert v1.json()["version"] == 1
            missing = {"inputs": v2_body()["inputs"][:1]}
            bad = client.post("/v2/models/iris/infer", json=missing)
            assert bad.status_code == 400
            assert client.get("/v2/models/iris/ready").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert f"serving {directory} as iris v1" in log.read_text()
    assert key not in log.read_text()
    db = Database(f"sqlite:///{data / 'modelserve.db'}", pool_size=1)
    try:
        with db.transaction() as session:
            assert session.scalar(select(func.count()).select_from(Prediction)) == 3
    finally:
        db.dispose()


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(log.read_text())


def test_the_same_artifact_is_registered_once(db: Database, tmp_path: Path) -> None:
    directory = model_dir(tmp_path / "models", fmt="joblib")
    assert register_model_dir(db, directory, "iris") == ("iris", 1)
    assert register_model_dir(db, directory, "iris") == ("iris", 1)
    (directory / "model.joblib").write_bytes(to_bytes(fit_iris(), "pickle"))
    assert register_model_dir(db, directory, None) == ("model", 1)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "must hold exactly one of"),
        ({"model.skops": b"", "model.pkl": b""}, "found: model.pkl, model.skops"),
        ({"model.joblib": b""}, "schema.json: No such file"),
        ({"model.joblib": b"", "schema.json": b'{"features": 3}'}, "is not an input schema"),
    ],
)
def test_an_incomplete_model_dir_is_refused_clearly(
    db: Database, tmp_path: Path, files: dict[str, bytes], message: str
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ModelDirError) as caught:
        register_model_dir(db, tmp_path, "iris")
    assert message in caught.value.message


def test_auth_disabled_answers_anonymous_callers_as_a_prediction_only_user(
    client: TestClient, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    register_iris(client)
    with caplog.at_level(logging.WARNING), make_client(auth_disabled=True) as mesh:
        anonymous = TestClient(mesh.app, raise_server_exceptions=False)
        answer = anonymous.post("/v1/models/iris/predict", json={"instances": ROWS})
        assert answer.status_code == 200, answer.text
        assert anonymous.post("/v2/models/iris/infer", json=v2_body()).status_code == 200
        # Prediction only: registering or reading the log of others is still refused.
        assert anonymous.get("/v1/audit").status_code == 403
        # A credential that is wrong is still refused, not taken as anonymous.
        wrong = anonymous.get("/v1/models", headers={"X-API-Key": "msk_00000000_nope"})
        assert wrong.status_code == 401
        logged = mesh.get("/v1/predictions?model=iris").json()["data"]
    assert AUTH_DISABLED_WARNING in caplog.text
    assert {row["caller"] for row in logged} == {MESH_USER}


def test_auth_is_required_by_default(client: TestClient, anon: TestClient) -> None:
    register_iris(client)
    assert anon.post("/v1/models/iris/predict", json={"instances": ROWS}).status_code == 401
