"""What the prediction-log journal costs on the predict path. Not run in CI.

Run: ``python bench/journal.py [--records 20000] [--duration 6] [--clients 32] [--rounds 2]
[--database-url URL]``.

* In process: ``LogWriter.put`` (the call the predict path makes) on the demo database, with the
  journal and without, in microseconds per record (the writer thread drains meanwhile),
  ``encoding.encode`` (the journal line) alone, and ``Journal.append`` of one-row and 100-row
  sized lines with records pending (segments filled and replaced, as under load).
* Served: ``modelserve serve`` with ``LOG_JOURNAL`` on and off (alternated ``--rounds`` times,
  as the machine's load drifts), single-row iris predictions from ``--clients`` connections
  (``bench/load.py`` in its own process), in req/s, p50/p99 and server CPU per request.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batching import SERVER_CPU, clean_env, free_port, load, show

from modelserve.core.clock import utcnow
from modelserve.core.db import Database
from modelserve.predictions.encoding import encode
from modelserve.predictions.journal import Journal
from modelserve.predictions.schemas import PredictionRecord
from modelserve.predictions.spill import SpillStore
from modelserve.predictions.writer import LogWriter

IRIS = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def records(count: int, model_id: int, version_id: int) -> list[PredictionRecord]:
    """Records like the predict path's for a one-row iris request."""
    outputs = {"predictions": [0], "probabilities": [{"0": 0.97, "1": 0.02, "2": 0.01}]}
    return [
        PredictionRecord(
            request_id=uuid.uuid4(),
            model_id=model_id,
            model_version_id=version_id,
            user_id=1,
            api_key_id=1,
            caller="demo (key ms_abc123)",
            protocol="v1",
            status="ok",
            http_status=200,
            latency_ms=0.8,
            n_rows=1,
            inputs=[IRIS],
            outputs=outputs,
            error=None,
            created_at=utcnow(),
        )
        for _ in range(count)
    ]


def in_process(url: str, data_dir: Path, count: int) -> None:
    db = Database(url, pool_size=2)
    with db.engine.connect() as connection:
        row = connection.exec_driver_sql("SELECT model_id, id FROM model_versions").first()
    assert row is not None
    model_id, version_id = int(row[0]), int(row[1])
    items = records(count, model_id, version_id)
    started = time.perf_counter()
    for item in items:
        encode(item)
    print(f"  encode (the journal line)              {_us(started, count):7.2f} us/record")
    for label, journal in (("off", False), ("on", True), ("off", False), ("on", True)):
        spill = SpillStore(data_dir / f"spill-{label}")
        writer = LogWriter(
            db, spill, queue_size=count * 2, journal=Journal(spill) if journal else None
        )
        writer.start()
        batch = records(count, model_id, version_id)
        started = time.perf_counter()
        for item in batch:
            writer.put(item)
        took = _us(started, count)
        writer.flush(timeout=120)
        writer.close()
        print(f"  LogWriter.put, journal {label:3}              {took:7.2f} us/record")
    db.dispose()


def appends(data_dir: Path, size: int, lag: int, count: int = 3000) -> None:
    """``Journal.append`` of ``size``-byte lines while ``lag`` records are pending (done in
    steps of 25, as the writer commits batches): under load the current segment never empties,
    so segments keep being filled and replaced."""
    line = b"x" * (size - 1) + b"\n"
    spill = SpillStore(data_dir / f"spill-appends-{size}-{lag}")
    journal = Journal(spill)
    journal.open()
    pending: list[int] = []
    took = 0.0
    for _ in range(count):
        started = time.perf_counter()
        pending.append(journal.append(line))
        took += time.perf_counter() - started
        if len(pending) >= lag + 25:
            journal.done(pending[:25])
            del pending[:25]
    journal.done(pending)
    journal.close()
    spill.close()
    print(f"  Journal.append, {size:6} B, {lag:3} pending   {took * 1e6 / count:7.2f} us/record")


def _us(started: float, count: int) -> float:
    return (time.perf_counter() - started) * 1e6 / count


@contextlib.contextmanager
def server(data_dir: Path, url: str, journal: bool) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = clean_env(
        MODELSERVE_DATA_DIR=str(data_dir),
        MODELSERVE_DATABASE_URL=url,
        MODELSERVE_LOG_JOURNAL=str(journal).lower(),
    )

    def pin() -> None:
        if SERVER_CPU is not None:
            os.sched_setaffinity(0, {SERVER_CPU})

    with (data_dir / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelserve", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=pin,  # noqa: PLW1509 (no threads in this process yet)
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit((data_dir / "server.log").read_text()[-3000:])
                time.sleep(0.1)
            yield base, proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-url", help="default: SQLite in a temporary data dir")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelserve-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        url = args.database_url or f"sqlite:///{data_dir / 'modelserve.db'}"
        env = clean_env(MODELSERVE_DATA_DIR=str(data_dir), MODELSERVE_DATABASE_URL=url)
        subprocess.run(
            [sys.executable, "-m", "modelserve", "demo", "--no-serve"],
            env=env,
            check=True,
            capture_output=True,
        )
        key = (data_dir / "demo-api-key").read_text().strip()
        print(f"in process ({args.records} records, {url.split(':')[0]}):", flush=True)
        in_process(url, data_dir, args.records)
        for size, lag in ((600, 50), (22_000, 0), (22_000, 50)):
            appends(data_dir, size, lag)
        body = orjson.dumps({"instances": [IRIS]})
        print(f"served (iris, {args.clients} single-row clients):", flush=True)
        for _ in range(args.rounds):
            for journal in (False, True):
                with server(data_dir, url, journal) as (base, pid):
                    predict = f"{base}/v1/models/iris/predict"
                    result = load(predict, key, [body], args.clients, args.duration, pid)
                    show(f"journal {'on' if journal else 'off'}", result)


if __name__ == "__main__":
    main()
