"""``modelserve serve --workers N``: a Gunicorn master with Uvicorn workers.

The process tests find the workers as the master's children in ``/proc`` and which worker holds
a connection from ``/proc/net/tcp`` (Linux, like Gunicorn itself). A request is known to be in
flight, rather than merely sent, when the server answers its ``Expect: 100-continue``: Uvicorn
sends ``100 Continue`` when the app first reads the body."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from factories import create_key, create_user, fit_iris, iris_instance, iris_schema, to_bytes
from fastapi import FastAPI
from processes import free_port, running_server
from sqlalchemy import func, select
from typer.testing import CliRunner

from modelserve.cli.main import app as cli
from modelserve.config import Settings
from modelserve.core.db import Database
from modelserve.lifecycle.models import ServerInstance, VersionReadiness
from modelserve.predictions.models import Prediction
from modelserve.server import workers as server_workers
from modelserve.server.application import GunicornServer
from modelserve.server.workers import bind_address, gunicorn_options, worker_count
from modelserve.users.models import Role

T = TypeVar("T")
PREDICT = "/v1/models/iris/predict"
BODY = orjson.dumps({"instances": [iris_instance(0)]})
linux_only = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="reads processes and sockets from /proc"
)

ROOT = Path(__file__).resolve().parent.parent


# --- worker count, options -------------------------------------------------------------------


def test_worker_count_defaults_to_one_and_auto_is_the_available_cpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_workers, "available_cpus", lambda: 6)
    assert worker_count(None) == 1
    assert worker_count(3) == 3
    assert worker_count("auto") == 6
    assert worker_count(None, default="auto") == 6
    assert worker_count(2, default="auto") == 2


def test_available_cpus_follows_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 3, 5})
    assert server_workers.available_cpus() == 3


def test_workers_setting_reads_a_number_or_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().workers is None
    monkeypatch.setenv("MODELSERVE_WORKERS", "4")
    assert Settings().workers == 4
    monkeypatch.setenv("MODELSERVE_WORKERS", "auto")
    assert Settings().workers == "auto"
    for bad in ("0", "-1", "many"):
        monkeypatch.setenv("MODELSERVE_WORKERS", bad)
        with pytest.raises(ValueError, match="workers"):
            Settings()


@pytest.mark.parametrize("command", ["serve", "demo"])
@pytest.mark.parametrize("value", ["0", "-2", "two", ""])
def test_serve_and_demo_refuse_a_bad_worker_count(command: str, value: str) -> None:
    result = CliRunner().invoke(cli, [command, "--workers", value])
    assert result.exit_code == 2
    assert "1 or more" in result.output


def test_gunicorn_runs_uvicorn_workers_built_after_the_fork(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GUNICORN_CMD_ARGS", raising=False)
    settings = Settings(data_dir=tmp_path, host="::1", port=9123, log_flush_timeout_seconds=12.5)
    server = GunicornServer(settings, 3)
    cfg = server.cfg
    assert cfg.bind == ["[::1]:9123"]
    assert cfg.workers == 3
    assert cfg.worker_class_str == "modelserve.server.worker.UvicornWorker"
    assert not cfg.preload_app
    assert cfg.graceful_timeout == 33  # in-flight requests, then the prediction log flush
    assert cfg.timeout >= 60  # a booting worker warms its models before it heartbeats
    assert cfg.max_requests > 0
    assert 0 < cfg.max_requests_jitter < cfg.max_requests
    assert cfg.accesslog is None
    assert cfg.control_socket_disable
    assert isinstance(server.load(), FastAPI)  # built here; nothing opened before its lifespan
    assert bind_address("127.0.0.1", 80) == "127.0.0.1:80"


def test_gunicorn_cmd_args_override_the_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--timeout 300 --keep-alive 75")
    cfg = GunicornServer(Settings(data_dir=tmp_path), 2).cfg
    assert (cfg.timeout, cfg.keepalive, cfg.workers) == (300, 75, 2)


def test_the_worker_class_turns_uvicorns_access_log_off() -> None:
    from modelserve.server.worker import UvicornWorker

    assert UvicornWorker.CONFIG_KWARGS["access_log"] is False


def test_every_option_is_a_gunicorn_setting(tmp_path: Path) -> None:
    from gunicorn.config import Config

    known = Config().settings
    options = gunicorn_options(Settings(data_dir=tmp_path), 2)
    assert set(options) <= set(known)


# --- real processes --------------------------------------------------------------------------


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def children(pid: int) -> set[int]:
    """Live processes whose parent is ``pid``."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def instance_pids(db: Database) -> set[int]:
    with db.sessions() as session:
        return set(session.scalars(select(ServerInstance.pid)))


def ready_workers(master: subprocess.Popen[bytes], db: Database, count: int) -> set[int]:
    """The master's worker pids, once there are ``count`` and each has registered itself."""

    def check() -> set[int] | None:
        pids = children(master.pid)
        return pids if len(pids) == count and instance_pids(db) == pids else None

    return wait_for(check, f"{count} workers, each registered as a server instance")


def connection_owner(pids: set[int], server_port: int, client_port: int) -> int | None:
    """Which of ``pids`` holds the server end of the connection from ``client_port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)) == (
                server_port,
                client_port,
            ):
                inodes.add(f"socket:[{inode}]")
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    return None


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


class InFlight:
    """A predict request the server has started on (headers in, its body not yet sent)."""

    def __init__(self, port: int, key: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        head = (
            f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        self.sock.sendall(head.encode())
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):  # exactly the interim response, byte by byte
            byte = self.sock.recv(1)
            assert byte, f"closed before 100 Continue: {interim!r}"
            interim += byte
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        self.client_port: int = self.sock.getsockname()[1]

    def finish(self) -> tuple[int, Any]:
        """Send the body; the final status and JSON body."""
        self.sock.sendall(BODY)
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        try:
            return response.status, orjson.loads(response.read())
        finally:
            response.close()
            self.sock.close()


def predict_on_a_new_connection(port: int, key: str, pids: set[int]) -> tuple[int, Any, int | None]:
    """Status, body, and the worker that answered (found while the connection is still open)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        conn.request("POST", PREDICT, body=BODY, headers=headers)
        response = conn.getresponse()
        body = orjson.loads(response.read())
        assert conn.sock is not None
        return response.status, body, connection_owner(pids, port, conn.sock.getsockname()[1])
    finally:
        conn.close()


def register_iris(base: str, key: str) -> None:
    metadata = {"name": "iris", "input_schema": iris_schema(), "alias": "production"}
    created = httpx.post(
        f"{base}/v1/models",
        headers={"X-API-Key": key},
        data={"metadata": orjson.dumps(metadata).decode()},
        files={"file": ("iris.skops", to_bytes(fit_iris(), "skops"))},
        timeout=120,
    )
    assert created.status_code == 201, created.text


def warm_in(db: Database) -> set[int]:
    """Pids of the server instances that loaded and probed a version for an alias move."""
    with db.sessions() as session:
        query = (
            select(ServerInstance.pid)
            .join(VersionReadiness, VersionReadiness.instance_id == ServerInstance.id)
            .where(VersionReadiness.ok)
        )
        return set(session.scalars(query))


def logged_predictions(db: Database) -> int:
    with db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Prediction)) or 0)


@pytest.fixture
def database(empty_database_url: str) -> Iterator[Database]:
    """The server's database, unmigrated until the server starts (use it only after)."""
    db = Database(empty_database_url, pool_size=1)
    yield db
    db.dispose()


@pytest.mark.slow
@linux_only
def test_workers_load_the_model_share_requests_and_drain_on_sigterm(
    empty_database_url: str, database: Database, tmp_path: Path
) -> None:
    with running_server(empty_database_url, tmp_path / "data", "--workers", "2") as (base, master):
        port = int(base.rsplit(":", 1)[1])
        # The master migrated the empty database once; each worker registered itself.
        workers = ready_workers(master, database, 2)
        key = create_key(database, create_user(database, "ops", Role.MAINTAINER))

        # The alias moves only once the version is loaded and probed in every worker.
        register_iris(base, key)
        assert warm_in(database) == workers

        answered_by: set[int | None] = set()
        answered = 0
        while answered_by != workers:
            assert answered < 300, f"only workers {answered_by} of {workers} answered"
            status, body, owner = predict_on_a_new_connection(port, key, workers)
            assert (status, body["predictions"]) == (200, ["setosa"]), body
            answered += 1
            answered_by.add(owner)

        # Requests in flight in every worker when SIGTERM reaches the master.
        in_flight: list[InFlight] = []
        held_by: set[int | None] = set()
        while held_by != workers:
            assert len(in_flight) < 16, f"only workers {held_by} of {workers} took a request"
            in_flight.append(InFlight(port, key))
            held_by.add(connection_owner(workers, port, in_flight[-1].client_port))
        master.send_signal(signal.SIGTERM)
        # Refused once every worker has closed its listening socket: all are shutting down.
        wait_for(lambda: refuses_connections(port), "the listening socket to close")
        for request in in_flight:
            status, body = request.finish()
            assert (status, body["predictions"]) == (200, ["setosa"]), body

        assert master.wait(timeout=120) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    # Each worker ran its lifespan shutdown: deregistered, every prediction log record written.
    assert instance_pids(database) == set()
    assert logged_predictions(database) == answered + len(in_flight)


@pytest.mark.slow
@linux_only
def test_recycled_workers_reload_the_model_and_keep_answering(
    empty_database_url: str, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Gunicorn's own variable, for settings modelserve does not expose.
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--max-requests 10 --max-requests-jitter 5")
    with running_server(empty_database_url, tmp_path / "data", "--workers", "2") as (base, master):
        first = ready_workers(master, database, 2)
        key = create_key(database, create_user(database, "ops", Role.MAINTAINER))
        register_iris(base, key)
        with httpx.Client(
            base_url=base,
            headers={"X-API-Key": key},
            timeout=120,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:

            def predict() -> None:
                # A worker that reached its limit may close a connection it accepted just then
                # without answering (Uvicorn's max-requests): clients retry, so does this.
                for attempt in range(5):
                    try:
                        answer = client.post(PREDICT, content=BODY)
                        break
                    except httpx.TransportError:
                        if attempt == 4:
                            raise
                assert answer.status_code == 200, answer.text
                assert answer.json()["predictions"] == ["setosa"]

            sent = 0
            while children(master.pid) & first:
                assert sent < 500, f"workers {children(master.pid) & first} never recycled"
                predict()
                sent += 1
            # Only workers started after the first ones remain: they load the model to answer.
            for _ in range(10):
                predict()
        assert not ready_workers(master, database, 2) & first


@pytest.mark.slow
@linux_only
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    "config",
    [["-c", "python:modelserve.server.gunicorn_conf"], []],
    ids=["packaged-config", "checkout-gunicorn-conf-py"],
)
def test_plain_gunicorn_with_the_packaged_config(
    empty_database_url: str, database: Database, tmp_path: Path, config: list[str]
) -> None:
    port = free_port()
    env = os.environ | {
        "MODELSERVE_DATABASE_URL": empty_database_url,
        "MODELSERVE_DATA_DIR": str(tmp_path / "data"),
        "MODELSERVE_PORT": str(port),
        "MODELSERVE_WORKERS": "2",
    }
    command = [sys.executable, "-m", "gunicorn", *config]
    # Without -c, Gunicorn reads ./gunicorn.conf.py: the checkout's, beside pyproject.toml.
    with spawned(command, env, tmp_path / "gunicorn.log", cwd=ROOT) as master:
        wait_for(
            lambda: ready(f"http://127.0.0.1:{port}", master), "/readyz (migrated by the master)"
        )
        assert len(ready_workers(master, database, 2)) == 2
        master.send_signal(signal.SIGTERM)
        assert master.wait(timeout=120) == 0
    assert instance_pids(database) == set()


def ready(base: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "server exited"
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def spawned(
    command: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=cwd
        )
        try:
            yield process
        except BaseException:
            print(log_path.read_text())
            raise
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
