"""The prediction log off the request path: batched writes, the spill file when the queue is full,
replays, orphans of dead processes, and the metrics that show it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from factories import iris_instance, register_iris, unlabelled_metrics
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from modelserve.config import Settings
from modelserve.core.clock import utcnow
from modelserve.core.db import Database
from modelserve.predictions.models import Prediction
from modelserve.predictions.repository import PredictionRepository
from modelserve.predictions.schemas import PredictionRecord
from modelserve.predictions.spill import SpillStore, dumps
from modelserve.predictions.writer import LogWriter
from modelserve.registry.models import ModelVersion

INSTANCES = [iris_instance(row) for row in range(0, 150, 10)]


def stored(db: Database) -> dict[str, Prediction]:
    """Every logged primary/canary prediction, by request id."""
    with db.sessions() as session:
        rows = session.scalars(select(Prediction).where(Prediction.variant != "shadow")).all()
    return {str(row.request_id): row for row in rows}


def metric(client: TestClient, name: str) -> float:
    """One unlabelled sample of GET /metrics, by its full sample name."""
    samples = unlabelled_metrics(client)
    assert name in samples, f"{name} not in /metrics: {sorted(samples)}"
    return samples[name]


def version_ids(db: Database) -> tuple[int, int]:
    """(model id, version id) of the one registered version."""
    with db.sessions() as session:
        version = session.scalars(select(ModelVersion)).one()
        return version.model_id, version.id


def record(model_id: int, version_id: int, n: int = 0) -> PredictionRecord:
    return PredictionRecord(
        request_id=uuid.uuid4(),
        model_id=model_id,
        model_version_id=version_id,
        user_id=None,
        api_key_id=None,
        caller=f"test {n}",
        protocol="v1",
        status="ok",
        http_status=200,
        latency_ms=1.25 + n,
        n_rows=1,
        inputs=[{"x": n, "nan": "nan", "text": "é\\u0000"}],
        outputs={"predictions": [n], "probabilities": [{"a": 0.25, "b": 0.75}]},
        error=None,
        created_at=utcnow(),
    )


def same(row: Prediction, expected: PredictionRecord) -> None:
    for name in (
        "model_id",
        "model_version_id",
        "caller",
        "protocol",
        "status",
        "http_status",
        "latency_ms",
        "n_rows",
        "inputs",
        "outputs",
        "error",
        "created_at",
        "variant",
    ):
        assert getattr(row, name) == getattr(expected, name), name


def test_concurrent_predictions_are_all_logged_with_their_fields(
    client: TestClient, db: Database
) -> None:
    register_iris(client)

    def predict(i: int) -> tuple[int, str | None]:
        body: Any = {"instances": [INSTANCES[i % len(INSTANCES)]]}
        if i % 10 == 0:
            body = {"instances": [{"sepal_length": "bad"}]}  # invalid requests are logged too
        response = client.post("/v1/models/iris/predict", json=body)
        if i % 10 == 0:
            assert response.status_code == 422
            return i, None
        assert response.status_code == 200
        return i, response.headers["x-request-id"]

    with ThreadPoolExecutor(8) as pool:
        sent = list(pool.map(predict, range(200)))
    assert client.app.state.modelserve.log_writer.flush(timeout=60)
    rows = stored(db)
    assert len(rows) == 200
    for row in rows.values():
        assert row.caller is not None
        assert row.caller.startswith("root-admin (msk_")
        assert (row.protocol, row.variant) == ("v1", "primary")
    invalid = [row for row in rows.values() if row.status == "invalid"]
    assert len(invalid) == 20
    assert {(r.http_status, r.n_rows, r.error["code"]) for r in invalid} == {
        (422, 0, "validation_error")
    }
    for i, request_id in sent:
        if request_id is not None:
            row = rows[request_id]
            assert (row.status, row.http_status, row.n_rows) == ("ok", 200, 1)
            assert row.inputs == [INSTANCES[i % len(INSTANCES)]]
            assert len(row.outputs["predictions"]) == 1
    assert metric(client, "modelserve_prediction_log_written_total") == 200
    assert metric(client, "modelserve_prediction_log_queue_depth") == 0
    assert metric(client, "modelserve_prediction_log_spilled_total") == 0


def test_full_queue_spills_and_every_record_is_replayed(
    client: TestClient, db: Database, tmp_path: Path
) -> None:
    register_iris(client)
    model_id, version_id = version_ids(db)
    records = [record(model_id, version_id, n) for n in range(7)]
    spill_dir = tmp_path / "spill"
    writer = LogWriter(db, SpillStore(spill_dir), queue_size=2, batch_size=3)
    for item in records:  # not started yet: two are queued, the rest spilled
        writer.put(item)
    assert (writer.stats().queue_depth, writer.stats().spilled) == (2, 5)
    assert len(next(spill_dir.glob("*.jsonl")).read_bytes().splitlines()) == 5
    writer.start()
    assert writer.flush(timeout=60)
    rows = stored(db)
    for item in records:
        same(rows[str(item.request_id)], item)
    stats = writer.stats()
    assert (stats.written, stats.spilled, stats.replayed, stats.spill_pending) == (2, 5, 5, 0)
    writer.close()
    assert list(spill_dir.iterdir()) == []  # nothing left to replay, no lock file


def test_a_burst_on_a_tiny_queue_loses_nothing(make_client: Any, db: Database) -> None:
    with make_client(log_queue_size=1, log_batch_size=4) as client:
        register_iris(client)

        def predict(i: int) -> str:
            body = {"instances": [INSTANCES[i % len(INSTANCES)]]}
            response = client.post("/v1/models/iris/predict", json=body)
            assert response.status_code == 200, response.text
            return str(response.json()["request_id"])

        with ThreadPoolExecutor(8) as pool:
            sent = set(pool.map(predict, range(120)))
        # Listing waits for this process's queue and replays what it spilled.
        listed = client.get("/v1/predictions", params={"limit": 500}).json()["data"]
        assert {row["request_id"] for row in listed} == sent
        written = metric(client, "modelserve_prediction_log_written_total")
        spilled = metric(client, "modelserve_prediction_log_spilled_total")
        assert written + spilled == 120
        assert metric(client, "modelserve_prediction_log_replayed_total") == spilled
        assert metric(client, "modelserve_prediction_log_spill_pending") == 0
    assert set(stored(db)) == sent


DEAD_PROCESS = """
import os, sys
from pathlib import Path
from modelserve.predictions.spill import SpillStore, loads
store = SpillStore(Path(sys.argv[1]))
store.append([loads(line) for line in sys.stdin.buffer if line.strip()])
os._exit(0)  # dies without closing: its spill file and lock file stay behind
"""


def test_spill_files_of_a_dead_process_are_replayed_at_start(
    make_client: Any, settings: Settings, db: Database
) -> None:
    with make_client() as client:
        register_iris(client)
    model_id, version_id = version_ids(db)
    spill_dir = settings.data_dir / "spill"
    orphaned = [record(model_id, version_id, n) for n in range(5)]
    subprocess.run(
        [sys.executable, "-c", DEAD_PROCESS, str(spill_dir)],
        input=b"".join(dumps(r) + b"\n" for r in orphaned),
        check=True,
    )
    assert {p.suffix for p in spill_dir.iterdir()} == {".jsonl", ".lock"}
    alive = SpillStore(spill_dir)  # a live process's file is never taken from it
    kept = record(model_id, version_id, 99)
    alive.append([kept])
    try:
        with make_client() as client:
            deadline = time.monotonic() + 60
            while metric(client, "modelserve_prediction_log_adopted_total") < len(orphaned):
                assert time.monotonic() < deadline, "orphaned records never replayed"
                time.sleep(0.1)
        rows = stored(db)
        for item in orphaned:
            same(rows[str(item.request_id)], item)
        assert str(kept.request_id) not in rows
        assert sorted(p.name for p in spill_dir.iterdir()) == [
            f"{alive.owner}.jsonl",
            f"{alive.owner}.lock",
        ]
    finally:
        alive.close()


def test_a_replay_skips_records_already_stored(
    client: TestClient, db: Database, tmp_path: Path
) -> None:
    # A batch may be both committed and spilled (say the commit's answer was lost, or shutdown
    # spilled a batch the database was still writing): the replay must not fail nor duplicate.
    register_iris(client)
    model_id, version_id = version_ids(db)
    items = [record(model_id, version_id, n) for n in range(3)]
    writer = LogWriter(db, SpillStore(tmp_path / "spill"))
    writer.start()
    for item in items:
        writer.put(item)
    assert writer.flush(timeout=60)
    writer.spill.append(items)
    assert writer.flush(timeout=60)
    writer.put(items[0])  # PostgreSQL's COPY refuses it; the INSERT that skips it takes over
    assert writer.flush(timeout=60)
    stats = writer.stats()
    assert (stats.written, stats.spilled, stats.replayed, stats.rejected) == (4, 3, 3, 0)
    writer.close()
    with db.sessions() as session:
        assert len(session.scalars(select(Prediction.id)).all()) == 3


@pytest.mark.parametrize("enabled", [True, False])
def test_metrics_need_an_admin_and_logging_can_be_switched_off_for_benchmarks(
    make_client: Any, db: Database, enabled: bool
) -> None:
    with make_client(prediction_log=enabled) as client:
        register_iris(client)
        response = client.post("/v1/models/iris/predict", json={"instances": INSTANCES[:2]})
        assert response.status_code == 200
        listed = client.get("/v1/predictions").json()["data"]
        assert len(listed) == (1 if enabled else 0)
        assert metric(client, "modelserve_prediction_log_written_total") == (1 if enabled else 0)
        assert metric(client, "modelserve_prediction_log_queue_capacity") == 10_000
        assert metric(client, "modelserve_prediction_log_batch_seconds_count") == (
            1 if enabled else 0
        )
        anonymous = TestClient(client.app, raise_server_exceptions=False)
        assert anonymous.get("/metrics").status_code == 401


def test_postgresql_writes_with_copy_and_sqlite_with_insert(
    backend: str, client: TestClient
) -> None:
    register_iris(client)
    for _ in range(3):
        response = client.post("/v1/models/iris/predict", json={"instances": INSTANCES[:2]})
        assert response.status_code == 200
    assert len(client.get("/v1/predictions").json()["data"]) == 3  # written, after a flush
    assert metric(client, "modelserve_prediction_log_written_total") == 3
    copied = metric(client, "modelserve_prediction_log_copied_total")
    assert copied == (3 if backend == "postgresql" else 0)


@pytest.mark.parametrize("backend", ["sqlite"])  # the insert's SQLite path binds by itself
def test_sqlite_insert_stores_exactly_what_the_orm_stores(
    backend: str, client: TestClient, db: Database
) -> None:
    register_iris(client)
    model_id, version_id = version_ids(db)
    base = record(model_id, version_id, 3)
    elsewhere = datetime(2026, 12, 8, 1, 2, 3, tzinfo=timezone(timedelta(hours=-5)))
    variants = [
        base,
        dataclasses.replace(
            base,
            inputs=orjson.Fragment(b'{"x":[1.5,-0.0,1e300],"y":["\\u00e9"]}'),  # as encode gives
            outputs=None,
            error={"code": "validation_error", "details": [{"row": 0, "message": "a\tb"}]},
            caller="ünïcode 'quoted'",
            status="invalid",
            variant="shadow",
            runtime="onnx",
            inputs_encoding="float64",
            created_at=elsewhere,  # not UTC, and no microseconds
        ),
    ]
    by_orm = [dataclasses.replace(r, request_id=uuid.uuid4()) for r in variants]
    by_insert = [dataclasses.replace(r, request_id=uuid.uuid4()) for r in variants]
    with db.transaction() as session:
        PredictionRepository(session).insert_many(by_orm)
        PredictionRepository(session).insert_ignoring_duplicates(by_insert)
        PredictionRepository(session).insert_ignoring_duplicates(by_insert)  # skipped: stored
    columns = [c.name for c in Prediction.__table__.columns if c.name != "id"]
    selected = ", ".join(f"{name}, typeof({name})" for name in columns)
    with db.sessions() as session:
        assert session.scalar(text("SELECT count(*) FROM predictions")) == 4
        for a, b in zip(by_orm, by_insert, strict=True):
            rows = [
                session.execute(
                    text(f"SELECT {selected} FROM predictions WHERE request_id = :id"),
                    {"id": r.request_id.hex},
                ).one()
                for r in (a, b)
            ]
            assert rows[0][2:] == rows[1][2:]  # all but request_id itself
            assert rows[1][:2] == (b.request_id.hex, "text")
    rows = stored(db)
    same(rows[str(by_insert[0].request_id)], by_insert[0])
    assert rows[str(by_insert[0].request_id)].created_at == base.created_at


@pytest.mark.parametrize("backend", ["postgresql"])  # COPY is the PostgreSQL path
def test_copy_stores_exactly_what_the_insert_stores(
    backend: str, client: TestClient, db: Database
) -> None:
    register_iris(client)
    model_id, version_id = version_ids(db)
    base = record(model_id, version_id, 7)
    variants = [
        base,
        dataclasses.replace(
            base,
            inputs=[{"a": 0.1, "b": -0.0, "c": 1e300, "d": 2**62, "e": None, "f": ["x", True]}],
            outputs=None,
            error={"code": "validation_error", "details": [{"row": 0, "message": "a\tb\n\\"}]},
            caller="ünïcode 'quoted' \"and\" tab\there",
            user_id=None,
            status="invalid",
            variant="shadow",
        ),
    ]
    copied = [dataclasses.replace(r, request_id=uuid.uuid4()) for r in variants]
    inserted = [dataclasses.replace(r, request_id=uuid.uuid4()) for r in variants]
    with db.transaction() as session:
        PredictionRepository(session).copy_new(copied)
        PredictionRepository(session).insert_ignoring_duplicates(inserted)
    columns = [c.name for c in Prediction.__table__.columns if c.name not in {"id", "request_id"}]
    with db.sessions() as session:
        for a, b in zip(copied, inserted, strict=True):
            rows = [
                session.execute(
                    text(
                        f"SELECT {', '.join(columns)}, inputs::text, outputs::text, error::text "
                        "FROM predictions WHERE request_id = :id"
                    ),
                    {"id": r.request_id},
                ).one()
                for r in (a, b)
            ]
            assert rows[0] == rows[1]
        stored_rows = stored(db)
        for item in copied[:1]:
            same(stored_rows[str(item.request_id)], item)
