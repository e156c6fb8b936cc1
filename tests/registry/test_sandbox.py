"""Uploads are opened in a limited child process: archive bombs are refused from their declared
sizes before anything inflates, and a file that needs too much memory or time is answered 422
while the serving process never holds it."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import httpx
import joblib
import numpy as np
import orjson
import pytest
from conftest import ClientFactory
from factories import fit_iris, iris_instance, iris_schema, register, to_bytes
from fastapi.testclient import TestClient
from processes import running_server

MiB = 1024**2


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _skops_with_schema(content: bytes) -> bytes:
    """The iris model as a skops archive whose schema.json is ``content``."""
    with zipfile.ZipFile(io.BytesIO(to_bytes(fit_iris(), "skops"))) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    return _zip({**members, "schema.json": content})


def _declaring(data: bytes, member: str, size: int) -> bytes:
    """``data`` with ``member``'s central-directory entry claiming ``size`` inflated bytes."""
    name = member.encode()
    entry = data.index(b"PK\x01\x02")
    while data[entry + 46 : entry + 46 + len(name)] != name:
        entry = data.index(b"PK\x01\x02", entry + 4)
    return data[: entry + 24] + struct.pack("<I", size) + data[entry + 28 :]


def test_a_declared_bomb_is_refused_before_anything_runs(client: TestClient) -> None:
    bomb = _declaring(_skops_with_schema(b"{}"), "schema.json", 2 * 1024**3)  # 2 GiB declared

    response = register(client, "iris", bomb, iris_schema(), filename="iris.skops")

    assert response.status_code == 413, response.text
    body = response.json()
    assert body["code"] == "artifact_too_large"
    assert body["details"]["limit"] == "inflated_bytes"


def test_a_real_bomb_is_refused_from_its_ratio(make_client: ClientFactory) -> None:
    # 64 MiB of spaces deflate to about 64 KiB: what inflating it would cost is never paid,
    # though the sandbox's memory limit is below it (a child that inflated it would die: 422).
    bomb = _skops_with_schema(b" " * (64 * MiB))
    assert len(bomb) < MiB

    with make_client(sandbox_memory_bytes=32 * MiB) as client:
        response = register(client, "iris", bomb, iris_schema(), filename="iris.skops")

    assert response.status_code == 413, response.text
    assert response.json()["details"]["limit"] == "compression_ratio"


def test_the_inflated_size_limit_is_a_setting(make_client: ClientFactory) -> None:
    data = _skops_with_schema(b" " * 4096)
    with make_client(artifact_max_inflated_bytes=1024) as client:
        response = register(client, "iris", data, iris_schema(), filename="iris.skops")

    assert response.status_code == 413, response.text
    details = response.json()["details"]
    assert details["limit"] == "inflated_bytes"
    assert details["allowed"] == 1024
    assert details["declared"] > 4096


def _model_holding(array_bytes: int) -> bytes:
    """A compressed joblib file of a valid model carrying an array of zeros of that size: a few
    hundred KiB on disk, no declared size to check, the full size in memory once loaded."""
    model = fit_iris()
    model.ballast_ = np.zeros(array_bytes // 8)
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    return buffer.getvalue()


def test_a_file_that_needs_more_memory_than_the_sandbox_allows_is_refused(
    make_client: ClientFactory,
) -> None:
    data = _model_holding(384 * MiB)
    assert len(data) < 2 * MiB

    with make_client(sandbox_memory_bytes=128 * MiB) as client:
        response = register(client, "iris", data, iris_schema(), filename="iris.joblib")
        listed = client.get("/v1/models").json()

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "artifact_limit_exceeded"
    assert response.json()["details"]["limit"] == "memory_bytes"
    assert listed["count"] == 0


def test_a_file_that_takes_longer_than_the_timeout_is_refused(make_client: ClientFactory) -> None:
    # No allowed callable can loop; a timeout below what any load takes shows the limit acts.
    with make_client(sandbox_timeout_seconds=0.001) as client:
        data = to_bytes(fit_iris(), "skops")
        response = register(client, "iris", data, iris_schema(), filename="iris.skops")

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "artifact_limit_exceeded"
    assert response.json()["details"] == {"limit": "timeout_seconds", "allowed": 0.001}


@pytest.mark.parametrize("fmt", ["skops", "joblib", "pickle"])
def test_normal_registrations_still_work(client: TestClient, fmt: str) -> None:
    data = to_bytes(fit_iris(), fmt)
    response = register(client, "iris", data, iris_schema(), filename=f"iris.{fmt}")
    assert response.status_code == 201, response.text

    predicted = client.post("/v1/models/iris/predict", json={"instances": [iris_instance()]})

    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["predictions"] == ["setosa"]


def _peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


@pytest.mark.slow
def test_a_serving_process_never_holds_the_bomb(
    database_url: str, admin_key: str, tmp_path: Path
) -> None:
    bombs = {
        "declared.skops": _declaring(_skops_with_schema(b"{}"), "schema.json", 2 * 1024**3),
        "deflated.skops": _skops_with_schema(b" " * (256 * MiB)),
        "ballast.joblib": _model_holding(768 * MiB),
    }
    metadata = {"metadata": orjson.dumps({"name": "iris", "input_schema": iris_schema()}).decode()}
    server = running_server(database_url, tmp_path / "data", sandbox_memory_bytes=str(256 * MiB))
    headers = {"X-API-Key": admin_key}
    with (
        server as (base, process),
        httpx.Client(base_url=base, headers=headers, timeout=300) as http,
    ):
        iris = {"file": ("iris.skops", to_bytes(fit_iris(), "skops"))}
        assert http.post("/v1/models", files=iris, data=metadata).status_code == 201
        before = _peak_rss(process.pid)
        statuses = {
            name: http.post("/v1/models", files={"file": (name, data)}, data=metadata)
            for name, data in bombs.items()
        }
        after = _peak_rss(process.pid)
        predicted = http.post("/v1/models/iris/predict", json={"instances": [iris_instance()]})

    codes = {name: (r.status_code, r.json()["code"]) for name, r in statuses.items()}
    assert codes == {
        "declared.skops": (413, "artifact_too_large"),
        "deflated.skops": (413, "artifact_too_large"),
        "ballast.joblib": (422, "artifact_limit_exceeded"),
    }
    assert after - before < 64 * MiB  # each bomb is 256 MiB or more once opened
    assert predicted.status_code == 200


def test_the_sandbox_holds_no_setting_and_forks_per_upload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelserve.registry.sandbox import SandboxLimits, Zygote, vet
    from modelserve.registry.schemas import InputSchema

    monkeypatch.setenv("MODELSERVE_SECRET_KEY", "not-for-uploads-" * 3)
    zygote = Zygote()
    monkeypatch.setattr("modelserve.registry.sandbox._ZYGOTE", zygote)
    schema = InputSchema.model_validate(iris_schema())
    try:
        started = []
        for fmt in ("pickle", "skops"):
            vetted = vet(to_bytes(fit_iris(), fmt), fmt, schema, SandboxLimits())  # type: ignore[arg-type]
            assert vetted.output.task == "classification"
            started.append(zygote._process)
        process = started[0]
        assert process is not None
        assert started == [process, process]  # one zygote forked both children
        assert process.poll() is None
        environment = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
        assert not [v for v in environment if v.startswith(b"MODELSERVE_")]
    finally:
        zygote.stop()
    assert process.poll() is not None
