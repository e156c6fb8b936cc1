"""Several replicas starting at once on one empty PostgreSQL database: exactly one applies the
migrations (under an advisory lock), the others wait, and all serve."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from processes import free_port

from modelserve.core import migrate
from modelserve.core.db import Database

pytestmark = pytest.mark.slow

REPLICAS = 4


def test_four_replicas_on_an_empty_database_migrate_once_and_all_serve(
    pg_empty_url: str, tmp_path: Path
) -> None:
    ports = [free_port() for _ in range(REPLICAS)]
    logs = [tmp_path / f"replica-{i}.log" for i in range(REPLICAS)]
    processes = []
    for i, (port, log) in enumerate(zip(ports, logs, strict=True)):
        env = os.environ | {
            "MODELSERVE_DATABASE_URL": pg_empty_url,
            "MODELSERVE_DATA_DIR": str(tmp_path / f"data-{i}"),
            "MODELSERVE_SECRET_KEY": "k" * 48,
            "COLUMNS": "400",
        }
        with log.open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "modelserve", "serve", "--port", str(port)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        pending = set(range(REPLICAS))
        deadline = time.monotonic() + 300  # a loaded 2-CPU machine: four imports at once
        while pending and time.monotonic() < deadline:
            for i in sorted(pending):
                assert processes[i].poll() is None, logs[i].read_text()
                try:
                    ready = httpx.get(f"http://127.0.0.1:{ports[i]}/readyz", timeout=1)
                except httpx.TransportError:
                    continue
                if ready.status_code == 200:
                    pending.discard(i)
            time.sleep(0.2)
        assert not pending, [logs[i].read_text() for i in pending]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    applied = [log for log in logs if "applied migrations base ->" in log.read_text()]
    assert len(applied) == 1, [log.read_text() for log in logs]
    db = Database(pg_empty_url, pool_size=1)
    try:
        assert migrate.is_at_head(db.engine)
    finally:
        db.dispose()
