"""A database outage degrades, it does not fail: with the test's own PostgreSQL stopped under
load, callers verified before it keep getting predictions (from the grace cache), everything
that needs the database answers 503 with Retry-After, /healthz and /metrics keep answering, and
every answered prediction is in the log once the database is back."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pgcluster
import pytest
from factories import create_key, create_user, iris_instance, register_iris
from processes import running_server
from sqlalchemy import select

from modelserve.core.db import Database
from modelserve.predictions.models import Prediction
from modelserve.users.models import Role

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not pgcluster.available(), reason="initdb/pg_ctl not installed"),
]
PREDICT = {"instances": [iris_instance()]}


class Load:
    """Threads predicting as one caller, recording (time, status, request id, envelope)."""

    def __init__(self, base: str, key: str, threads: int = 3) -> None:
        self.base, self.key = base, key
        self.results: list[tuple[float, int, str | None, str | None, Any]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        headers = {"X-API-Key": self.key}
        with httpx.Client(base_url=self.base, headers=headers, timeout=15) as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/v1/models/iris/predict", json=PREDICT)
                except httpx.TransportError as exc:
                    self.errors.append(repr(exc))
                    continue
                body = response.json()
                self.results.append(
                    (
                        time.monotonic(),
                        response.status_code,
                        response.headers.get("x-request-id"),
                        response.headers.get("retry-after"),
                        body,
                    )
                )

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "database_unavailable"
    assert int(response.headers["retry-after"]) == body["details"]["retry_after"] >= 1


def logged(db: Database, request_ids: set[uuid.UUID], timeout: float = 60) -> set[uuid.UUID]:
    """The request ids among ``request_ids`` the log holds, once it holds them all (or at the
    timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        with db.sessions() as session:
            stored = set(session.scalars(select(Prediction.request_id)))
        if request_ids <= stored or time.monotonic() > deadline:
            return stored & request_ids
        time.sleep(0.5)


def test_stopping_the_database_under_load(tmp_path: Path) -> None:
    with pgcluster.own_cluster() as cluster:
        env = {"log_replay_seconds": "0.5", "auth_grace_seconds": "300"}
        with running_server(cluster.url, tmp_path / "data", **env) as (base, _):
            db = Database(cluster.url, pool_size=1)
            admin = create_key(db, create_user(db, "ops", Role.ADMIN))
            caller = create_key(db, create_user(db, "caller"))
            stranger = create_key(db, create_user(db, "stranger"))  # never seen by the server
            ops = httpx.Client(base_url=base, headers={"X-API-Key": admin}, timeout=15)
            register_iris(ops)  # type: ignore[arg-type]
            assert ops.get("/metrics").status_code == 200
            with Load(base, caller) as load:
                time.sleep(1.5)
                cluster.stop()
                down = time.monotonic()
                time.sleep(2.5)  # past auth_cache_seconds: only the grace window answers now
                assert ops.get("/healthz").status_code == 200
                assert ops.get("/metrics").status_code == 200
                assert ops.get("/readyz").status_code == 503
                assert_unavailable(ops.get("/v1/predictions"))
                assert_unavailable(ops.put("/v1/models/iris/aliases/x", json={"version": 1}))
                anonymous = {"X-API-Key": stranger}
                assert_unavailable(httpx.get(f"{base}/v1/models", headers=anonymous))
                time.sleep(1.5)
                up = time.monotonic()
                cluster.start()
                time.sleep(2.5)
            counts = Counter(status for _, status, _, _, _ in load.results)
            print(f"statuses: {dict(counts)}, transport errors: {len(load.errors)}")
            assert load.errors == []
            statuses = set(counts)
            assert statuses <= {200, 503}, statuses
            for _, status, _, retry_after, body in load.results:
                if status == 503:
                    assert retry_after is not None
                    assert body["details"]["retry_after"] >= 1
            served_down = [r for r in load.results if down < r[0] < up and r[1] == 200]
            assert len(served_down) > 10  # the loaded model kept serving the cached caller
            answered = {uuid.UUID(rid) for _, status, rid, _, _ in load.results if status == 200}
            assert len(logged(db, answered)) == len(answered)
            assert ops.get("/v1/predictions", params={"limit": 1}).status_code == 200
            ops.close()
            db.dispose()
