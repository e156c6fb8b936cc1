"""Real server processes: predictions served while the database is away are logged once it is
back, a SIGTERM under load loses no logged prediction, and neither does a SIGKILL or a killed
Gunicorn worker: each record is in the process's journal (in the kernel) before its response
leaves, and the next process on the data dir (a restart, or the worker Gunicorn starts in place
of a killed one) replays it."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from factories import (
    create_key,
    create_user,
    fit_iris,
    iris_instance,
    iris_schema,
    to_bytes,
    unlabelled_metrics,
)
from processes import running_server
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from tcpproxy import TcpProxy

from modelserve.core.db import Database
from modelserve.lifecycle.changes import generation
from modelserve.predictions.models import Prediction
from modelserve.users.models import Role

pytestmark = pytest.mark.slow
INSTANCE = iris_instance(0)


def admin_key(database_url: str) -> str:
    db = Database(database_url, pool_size=1)
    try:
        return create_key(db, create_user(db, "ops", Role.ADMIN))
    finally:
        db.dispose()


def register_iris(http: httpx.Client) -> None:
    metadata = {"name": "iris", "input_schema": iris_schema(), "alias": "production"}
    response = http.post(
        "/v1/models",
        data={"metadata": orjson.dumps(metadata).decode()},
        files={"file": ("m.skops", to_bytes(fit_iris(), "skops"))},
    )
    assert response.status_code == 201, response.text


def predict(http: httpx.Client) -> str:
    response = http.post("/v1/models/iris/predict", json={"instances": [INSTANCE]})
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


def logged(database_url: str, request_ids: set[str]) -> set[str]:
    """Which of ``request_ids`` have their primary record in the database."""
    db = Database(database_url, pool_size=1)
    try:
        with db.sessions() as session:
            rows = session.scalars(
                select(Prediction.request_id).where(Prediction.variant == "primary")
            ).all()
    finally:
        db.dispose()
    return {str(r) for r in rows} & request_ids


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


@dataclass
class Outage:
    """The URL the server should use, and how to take its database away and bring it back."""

    url: str
    cut: Callable[[], None]
    restore: Callable[[], None]


@contextmanager
def outage(backend: str, database_url: str) -> Iterator[Outage]:
    """PostgreSQL: the server talks to it through a proxy that drops every connection when cut.
    SQLite: cutting takes the write lock from another connection, so every write times out (its
    busy timeout) as if the database were gone."""
    if backend == "postgresql":
        url = make_url(database_url)
        with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            proxied = url.set(host="127.0.0.1", port=proxy.port)
            yield Outage(proxied.render_as_string(hide_password=False), proxy.cut, proxy.restore)
        return
    path = make_url(database_url).database
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def restore() -> None:
        if holder.in_transaction:
            holder.execute("ROLLBACK")

    try:
        yield Outage(database_url, lambda: holder.execute("BEGIN EXCLUSIVE") and None, restore)
    finally:
        restore()
        holder.close()


def registry_generation(database_url: str) -> int:
    db = Database(database_url, pool_size=1)
    try:
        with db.sessions() as session:
            return generation(session)
    finally:
        db.dispose()


def spill_down(base: str, key: str, database_url: str, cut: Callable[[], None]) -> set[str]:
    """Register, log one prediction, cut the database, then send 40 predictions: every one is
    answered, and spilled. Returns their request ids."""
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as http:
        register_iris(http)
        # Let the server's registry watcher catch up with the registration (it drops the cached
        # routes when it does), so the route cached by the next prediction stays cached.
        current = registry_generation(database_url)
        wait_until(
            lambda: unlabelled_metrics(http)["modelserve_registry_generation"] == current,
            "the watcher has seen the registration",
        )
        warm = predict(http)  # the route and the caller are cached from here on
        wait_until(lambda: logged(database_url, {warm}) == {warm}, "the first record is logged")
        assert unlabelled_metrics(http)["modelserve_prediction_log_spilled_total"] == 0
        cut()
        sent = {predict(http) for _ in range(40)}
        wait_until(
            lambda: (
                unlabelled_metrics(http)["modelserve_prediction_log_spilled_total"] >= len(sent)
            ),
            "every record is spilled",
        )
        assert unlabelled_metrics(http)["modelserve_prediction_log_spilled_total"] == len(sent)
    return sent


def test_records_spilled_while_the_database_is_down_are_replayed_when_it_is_back(
    backend: str, database_url: str, tmp_path: Path
) -> None:
    key = admin_key(database_url)
    data_dir = tmp_path / "data"
    with (
        outage(backend, database_url) as db,
        running_server(db.url, data_dir, auth_cache_seconds="30") as (base, _),
    ):
        sent = spill_down(base, key, database_url, db.cut)
        spilled = {".jsonl", ".replaying"}  # not the journal, nor the lock
        spill_files = [p for p in (data_dir / "spill").iterdir() if p.suffix in spilled]
        assert sum(len(p.read_bytes().splitlines()) for p in spill_files) == len(sent)
        db.restore()
        wait_until(lambda: logged(database_url, sent) == sent, "every record is replayed")
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as http:
            wait_until(
                lambda: (
                    (m := unlabelled_metrics(http))["modelserve_prediction_log_replayed_total"]
                    == len(sent)
                    and m["modelserve_prediction_log_spill_pending"] == 0
                ),
                "replayed == spilled",
            )
    assert list((data_dir / "spill").iterdir()) == []


def test_records_spilled_by_a_process_that_stopped_are_replayed_by_the_next(
    backend: str, database_url: str, tmp_path: Path
) -> None:
    key = admin_key(database_url)
    data_dir = tmp_path / "data"
    with outage(backend, database_url) as db:
        with running_server(db.url, data_dir, auth_cache_seconds="30") as (base, _):
            sent = spill_down(base, key, database_url, db.cut)
        # Stopped while the database was still away: its records wait in its spill file.
        assert {p.suffix for p in (data_dir / "spill").iterdir()} - {".lock"} != set()
        db.restore()
        with running_server(database_url, data_dir):
            wait_until(lambda: logged(database_url, sent) == sent, "every record is replayed")
    assert list((data_dir / "spill").iterdir()) == []


def test_sigterm_under_load_loses_no_logged_prediction(database_url: str, tmp_path: Path) -> None:
    key = admin_key(database_url)
    answered: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def load(base: str) -> None:
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as http:
            while not stop.is_set():
                try:
                    response = http.post("/v1/models/iris/predict", json={"instances": [INSTANCE]})
                except httpx.TransportError:
                    time.sleep(0.01)  # shutting down: new connections are refused
                    continue
                if response.status_code == 200:
                    with lock:
                        answered.add(str(response.json()["request_id"]))

    data_dir = tmp_path / "data"
    with running_server(database_url, data_dir) as (base, process):
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as http:
            register_iris(http)
        threads = [threading.Thread(target=load, args=(base,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: len(answered) >= 300, "the server is under load")
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)  # uvicorn re-raises SIGTERM once it has shut down
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
    assert "Application shutdown complete" in (data_dir / "server.log").read_text()
    assert len(answered) >= 300
    assert logged(database_url, answered) == answered
    assert list((data_dir / "spill").glob("*.jsonl")) == []  # written at shutdown, not spilled


def rows_per_request(database_url: str) -> dict[str, int]:
    """How many primary rows each logged request id has."""
    db = Database(database_url, pool_size=1)
    try:
        with db.sessions() as session:
            counted = session.execute(
                select(Prediction.request_id, func.count())
                .where(Prediction.variant == "primary")
                .group_by(Prediction.request_id)
            ).all()
    finally:
        db.dispose()
    return {str(request_id): count for request_id, count in counted}


class Load:
    """Threads sending predictions as fast as the server answers; ``answered`` holds the
    request ids of the 200s."""

    def __init__(self, base: str, key: str, threads: int = 4) -> None:
        self.base, self.key = base, key
        self.answered: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send) for _ in range(threads)]

    def _send(self) -> None:
        with httpx.Client(base_url=self.base, headers={"X-API-Key": self.key}, timeout=30) as http:
            while not self._stop.is_set():
                try:
                    response = http.post("/v1/models/iris/predict", json={"instances": [INSTANCE]})
                except httpx.TransportError:
                    time.sleep(0.01)  # the process was killed: connections are refused or reset
                    continue
                if response.status_code == 200:
                    with self._lock:
                        self.answered.add(str(response.json()["request_id"]))

    def count(self) -> int:
        """Requests answered 200 so far."""
        with self._lock:
            return len(self.answered)

    @contextmanager
    def running(self) -> Iterator[Load]:
        """Send load while inside the block."""
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(timeout=60)


def assert_each_logged_once(database_url: str, answered: set[str]) -> None:
    def all_logged() -> bool:
        return answered <= set(rows_per_request(database_url))

    with contextlib.suppress(AssertionError):
        wait_until(all_logged, "every answered request is logged", seconds=60)
    counts = rows_per_request(database_url)
    missing = answered - set(counts)
    assert not missing, f"{len(missing)} of {len(answered)} answered requests never logged"
    assert {r: counts[r] for r in answered if counts[r] != 1} == {}


def test_sigkill_under_load_loses_no_answered_prediction(database_url: str, tmp_path: Path) -> None:
    key = admin_key(database_url)
    data_dir = tmp_path / "data"
    with running_server(database_url, data_dir) as (base, process):
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as http:
            register_iris(http)
        with Load(base, key).running() as load:
            wait_until(lambda: load.count() >= 300, "the server is under load")
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        answered = set(load.answered)
    leftovers = {p.name for p in (data_dir / "spill").iterdir()}
    assert any(name.endswith(".journal") for name in leftovers), leftovers
    with running_server(database_url, data_dir):  # adopts the dead process's journal
        assert_each_logged_once(database_url, answered)


def worker_pids(master: int) -> set[int]:
    """The live children of a Gunicorn master."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def wait_for_workers(master: subprocess.Popen[bytes], count: int) -> set[int]:
    found: set[int] = set()

    def enough() -> bool:
        found.clear()
        found.update(worker_pids(master.pid))
        return len(found) == count

    wait_until(enough, f"{count} workers")
    return set(found)


def test_a_killed_gunicorn_worker_loses_no_answered_prediction(
    database_url: str, tmp_path: Path
) -> None:
    key = admin_key(database_url)
    data_dir = tmp_path / "data"
    with running_server(database_url, data_dir, "--workers", "2") as (base, master):
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as http:
            register_iris(http)
        first = wait_for_workers(master, 2)
        with Load(base, key).running() as load:
            wait_until(lambda: load.count() >= 300, "the server is under load")
            victim = min(first)
            os.kill(victim, signal.SIGKILL)
            replaced: Callable[[], bool] = lambda: (  # noqa: E731
                len(worker_pids(master.pid) - first) == 1
            )
            wait_until(replaced, "Gunicorn started a worker in place of the killed one")
            seen = load.count()
            wait_until(lambda: load.count() >= seen + 100, "the new worker serves too")
        answered = set(load.answered)
        # The new worker adopted the killed one's journal at start; the live one never let go.
        assert_each_logged_once(database_url, answered)
