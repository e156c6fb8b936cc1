"""Three modelserve replicas behind a real HAProxy (loopback only) on one PostgreSQL: under
load, an alias move reaches every replica within a second; a replica killed with SIGKILL is
routed around; every request answered 200 has exactly one logged row once the survivors have
flushed and the killed replica has been restarted on its data dir; a key's quota holds across
replicas."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import httpx
import pytest
from factories import create_key, create_user, iris_instance, register_iris
from processes import free_port
from sqlalchemy import func, select

from modelserve.core.db import Database
from modelserve.predictions.models import Prediction
from modelserve.users.models import Role

pytestmark = pytest.mark.slow

REPLICAS = 3
PROPAGATION_BOUND = 3.0  # seconds: see tests/lifecycle/test_processes.py
HAPROXY_CONFIG = """\
global
    maxconn 256
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 3s
    retries 2
    option redispatch
    retry-on conn-failure empty-response
frontend api
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-response set-header X-Served-By %[srv_name]
{servers}
"""


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "haproxy is missing under CI: .ci/run installs it (apt-get install haproxy)"
            )
        pytest.skip("haproxy not installed (apt-get install -y haproxy)")
    return found


class Replica:
    """One ``modelserve serve`` process on its own port and data dir."""

    def __init__(self, name: str, url: str, data_dir: Path) -> None:
        self.name, self.url, self.data_dir = name, url, data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")} | {
            "MODELSERVE_DATABASE_URL": self.url,
            "MODELSERVE_DATA_DIR": str(self.data_dir),
            "MODELSERVE_SECRET_KEY": "lb-" + "s" * 45,
        }
        self.data_dir.mkdir(exist_ok=True)
        with (self.data_dir / f"server-{time.monotonic_ns()}.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modelserve", "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 300  # several replicas importing at once on 2 CPUs
        while time.monotonic() < deadline:
            assert self.process is not None
            assert self.process.poll() is None, self.logs()
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise AssertionError(self.logs())

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.data_dir.glob("server-*.log")))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)


@contextmanager
def haproxy(replicas: list[Replica], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    servers = "\n".join(
        f"    server {r.name} 127.0.0.1:{r.port} check inter 500ms fall 3 rise 1" for r in replicas
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(port=port, servers=servers))
    with (tmp_path / "haproxy.log").open("wb") as log:
        process = subprocess.Popen(
            [haproxy_binary(), "-f", str(config), "-db"], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}"
        seen: set[str | None] = set()
        deadline = time.monotonic() + 20
        while len(seen - {None}) < len(replicas):  # every replica's health check passed
            assert time.monotonic() < deadline, seen
            with suppress(httpx.TransportError):
                seen.add(httpx.get(f"{base}/healthz", timeout=1).headers.get("x-served-by"))
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


class Load:
    """Two clients predicting through the balancer until stopped; records every answer."""

    def __init__(self, base: str, key: str) -> None:
        self.base, self.key = base, key
        self.answers: list[tuple[float, int, str | None, str | None]] = []
        """(sent at, status, request id, replica)"""
        self.versions: list[tuple[float, int]] = []
        """(sent at, version) of each 200"""
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(2)]

    def _run(self, seed: int) -> None:
        body = {"instances": [iris_instance(seed)]}
        with httpx.Client(base_url=self.base, headers={"X-API-Key": self.key}) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    r = client.post("/v1/models/iris/predict", json=body, timeout=10)
                except httpx.TransportError:
                    self.answers.append((sent, 0, None, None))
                    continue
                rid, served = r.headers.get("x-request-id"), r.headers.get("x-served-by")
                self.answers.append((sent, r.status_code, rid, served))
                if r.status_code == 200:
                    self.versions.append((sent, int(r.json()["version"])))
                time.sleep(0.01)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def _version_seen(replica: Replica, key: str) -> tuple[float, int]:
    """(when the request was sent, the version that answered it) from one replica directly."""
    body = {"instances": [iris_instance(0)]}
    sent = time.monotonic()
    answer = httpx.post(
        f"{replica.base}/v1/models/iris/predict",
        json=body,
        headers={"X-API-Key": key},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    return sent, int(answer.json()["version"])


def _first_sent_with(replica: Replica, key: str, wanted: int) -> float:
    """When the first request that ``replica`` answered with version ``wanted`` was sent."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sent, version = _version_seen(replica, key)
        if version == wanted:
            return sent
        time.sleep(0.02)
    raise AssertionError(f"{replica.name} never answered with version {wanted}")


def test_three_replicas_behind_haproxy(pg_empty_url: str, tmp_path: Path) -> None:
    haproxy_binary()
    replicas = [Replica(f"r{i}", pg_empty_url, tmp_path / f"r{i}") for i in range(REPLICAS)]
    with ExitStack() as stack:
        for replica in replicas:
            replica.start()
            stack.callback(replica.stop)
        for replica in replicas:
            replica.wait_ready()
        base = stack.enter_context(haproxy(replicas, tmp_path))
        db = Database(pg_empty_url, pool_size=2)
        stack.callback(db.dispose)
        admin = create_key(db, create_user(db, "ops", Role.ADMIN))
        user = create_user(db, "app", Role.USER)
        key = create_key(db, user)
        with httpx.Client(base_url=base, headers={"X-API-Key": admin}, timeout=60) as client:
            register_iris(client)  # type: ignore[arg-type]
            register_iris(client)  # type: ignore[arg-type]
            moved = client.put("/v1/models/iris/aliases/production", json={"version": 1})
            assert moved.status_code == 200, moved.text

            # A quota is one count for every replica.
            quota_key = create_key(db, user, quota_per_minute=6)
            while time.localtime().tm_sec > 50:  # stay inside one fixed window
                time.sleep(1)
            statuses = [
                httpx.post(
                    f"{base}/v1/models/iris/predict",
                    json={"instances": [iris_instance(1)]},
                    headers={"X-API-Key": quota_key},
                ).status_code
                for _ in range(12)
            ]
            assert statuses.count(200) == 6, statuses
            assert statuses.count(429) == 6, statuses

            with Load(base, key) as load:
                time.sleep(1)
                moved = client.put("/v1/models/iris/aliases/production", json={"version": 2})
                assert moved.status_code == 200, moved.text
                answered_at = time.monotonic()
                # Every replica answers with the new version a request sent promptly after the
                # move's answer (probed at once, all replicas together; timed when the request
                # is sent, since answers can be slow on a loaded 2-CPU machine). The README
                # promises a second; the bound leaves the loaded machine's scheduler slack.
                with ThreadPoolExecutor(REPLICAS) as pool:
                    first_new = list(pool.map(lambda r: _first_sent_with(r, key, 2), replicas))
                assert all(sent - answered_at < PROPAGATION_BOUND for sent in first_new), first_new

                killed = replicas[2]
                assert killed.process is not None
                killed.process.send_signal(signal.SIGKILL)
                killed.process.wait()
                killed_at = time.monotonic()
                time.sleep(3)
            late = [v for sent, v in load.versions if sent > answered_at + PROPAGATION_BOUND]
            assert late
            assert set(late) == {2}
            after = [a for a in load.answers if a[0] > killed_at + 1.0]
            assert after
            assert all(status == 200 for _, status, _, _ in after), after
            assert {served for *_, served in after} == {"r0", "r1"}

        killed.start()  # same data dir: what it spilled is replayed
        killed.wait_ready()
        for replica in replicas:
            replica.stop()  # SIGTERM: survivors flush what is queued
    ok = [(rid, served) for _, status, rid, served in load.answers if status == 200]
    db = Database(pg_empty_url, pool_size=1)
    try:
        with db.transaction() as session:
            counts = dict(
                session.execute(
                    select(Prediction.request_id, func.count())
                    .where(Prediction.variant == "primary")
                    .group_by(Prediction.request_id)
                ).all()
            )
    finally:
        db.dispose()
    logged = {str(rid): n for rid, n in counts.items()}
    assert all(n == 1 for n in logged.values())
    missing = [(rid, served) for rid, served in ok if logged.get(str(rid)) != 1]
    # The killed replica's answers come back from its journal when it restarts on its data dir.
    assert missing == []
