"""No single record stops the prediction log: what orjson or the database cannot take is stored
in an escaped form, a record that still fails is set aside and counted, and the writer goes on."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from factories import iris_instance, register_iris, unlabelled_metrics
from fastapi.testclient import TestClient
from sqlalchemy import select

from modelserve.config import Settings
from modelserve.core.clock import utcnow
from modelserve.core.db import Database
from modelserve.predictions.encoding import MAX_DEPTH, loggable
from modelserve.predictions.journal import Journal
from modelserve.predictions.models import Prediction
from modelserve.predictions.schemas import PredictionRecord
from modelserve.predictions.spill import SpillStore
from modelserve.predictions.writer import LogWriter
from modelserve.registry.models import ModelVersion


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value: Any) -> int:
    depth = 0
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    return depth


def make_record(db: Database, n: int, inputs: Any) -> PredictionRecord:
    with db.sessions() as session:
        version = session.scalars(select(ModelVersion)).one()
    return PredictionRecord(
        request_id=uuid.uuid4(),
        model_id=version.model_id,
        model_version_id=version.id,
        user_id=None,
        api_key_id=None,
        caller=f"test {n}",
        protocol="v1",
        status="invalid",
        http_status=422,
        latency_ms=1.0,
        n_rows=1,
        inputs=inputs,
        outputs=None,
        error=None,
        created_at=utcnow(),
    )


def stored_inputs(db: Database) -> dict[str, Any]:
    with db.sessions() as session:
        rows = session.execute(select(Prediction.request_id, Prediction.inputs)).all()
    return {str(request_id): inputs for request_id, inputs in rows}


HOSTILE = {
    "surrogate": [{"sepal_length": "\ud800", "name\udfff": 1}],
    "nested 300": [{"sepal_length": nested(300)}],
    "nested 950": [{"sepal_length": nested(950)}],
    "huge int": [{"sepal_length": 10**30}],
}


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "no journal"])
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_record_is_stored_escaped_and_the_writer_goes_on(
    client: TestClient, db: Database, tmp_path: Path, kind: str, journal: bool
) -> None:
    register_iris(client)
    spill = SpillStore(tmp_path / "spill")
    writer = LogWriter(db, spill, journal=Journal(spill) if journal else None)
    writer.start()
    try:
        bad = make_record(db, 0, HOSTILE[kind])
        writer.put(bad)
        assert writer.flush(timeout=60)
        later = [make_record(db, n, [iris_instance(n)]) for n in range(1, 4)]
        for item in later:
            writer.put(item)
        assert writer.flush(timeout=60)
        stats = writer.stats()
        assert stats.writer_alive
        assert (stats.rejected, stats.escaped, stats.written) == (0, 1, 4)
    finally:
        writer.close()
    rows = stored_inputs(db)
    for item in later:
        assert rows[str(item.request_id)] == item.inputs
    logged = rows[str(bad.request_id)][0]
    if kind == "surrogate":
        assert logged == {"sepal_length": "\\ud800", "name\\udfff": 1}
    elif kind == "huge int":
        assert logged == {"sepal_length": str(10**30)}
    else:  # the part below MAX_DEPTH as JSON, the rest as its JSON text
        depth = int(kind.split()[1])
        value = logged["sepal_length"]
        kept = depth_of(value)
        assert 0 < kept < MAX_DEPTH
        for _ in range(kept):
            value = value[0]
        rest = depth - kept
        assert value == "[" * rest + "1" + "]" * rest
    assert list((tmp_path / "spill").glob("**/*")) == []  # nothing left behind nor rejected


def test_loggable_takes_any_depth_without_recursing_deeply() -> None:
    leaf = "a\x00\ud800"
    for depth in (MAX_DEPTH - 1, MAX_DEPTH, 1020, 50_000):
        logged = loggable({"x": nested(depth, leaf)})
        orjson.dumps(logged)  # it refuses more than 254 levels, and lone surrogates
        inner = logged["x"]
        shown = depth_of(inner)
        assert shown == min(depth, MAX_DEPTH - 1)
        for _ in range(shown):
            inner = inner[0]
        if depth < MAX_DEPTH:
            assert inner == "a\\u0000\\ud800"
        else:  # the rest as its JSON text
            rest = depth - shown
            assert inner == "[" * rest + '"a\\\\u0000\\\\ud800"' + "]" * rest


def test_a_record_the_database_refuses_even_escaped_is_set_aside_and_counted(
    client: TestClient, db: Database, tmp_path: Path
) -> None:
    register_iris(client)
    spill = SpillStore(tmp_path / "spill")
    writer = LogWriter(db, spill, journal=Journal(spill))
    writer.start()
    try:
        orphan = dataclasses.replace(
            make_record(db, 0, HOSTILE["surrogate"]), model_version_id=10**6
        )  # no such version: a foreign-key violation, whatever the escaping
        good = make_record(db, 1, [iris_instance(1)])
        writer.put(orphan)
        writer.put(good)
        assert writer.flush(timeout=60)
        stats = writer.stats()
        assert (stats.rejected, stats.written, stats.journal_pending) == (1, 2, 0)
        assert stats.writer_alive
    finally:
        writer.close()
    assert set(stored_inputs(db)) == {str(good.request_id)}
    (kept,) = (tmp_path / "spill" / "rejected").iterdir()
    line = orjson.loads(kept.read_bytes())
    assert line["record"]["request_id"] == str(orphan.request_id)
    assert line["record"]["inputs"] == [{"sepal_length": "\\ud800", "name\\udfff": 1}]
    assert "IntegrityError" in line["reason"]


def test_a_lone_surrogate_in_a_request_is_logged_escaped_over_http(
    client: TestClient, settings: Settings
) -> None:
    register_iris(client)
    others = {k: v for k, v in iris_instance(0).items() if k != "sepal_length"}
    # The JSON escape of a lone surrogate: the server's parser turns it into one.
    body = orjson.dumps({"instances": [others]})
    body = body.replace(b'[{"', b'[{"sepal_length":"\\ud800","', 1)
    refused = client.post(
        "/v1/models/iris/predict", content=body, headers={"content-type": "application/json"}
    )
    assert refused.status_code == 422, refused.text
    served = client.post("/v1/models/iris/predict", json={"instances": [iris_instance(1)]})
    assert served.status_code == 200
    (invalid, ok) = client.get("/v1/predictions").json()["data"][::-1]
    assert (invalid["status"], invalid["http_status"]) == ("invalid", 422)
    assert invalid["inputs"][0]["sepal_length"] == "\\ud800"
    assert ok["request_id"] == served.json()["request_id"]
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["prediction_log"] == "ok"
    samples = unlabelled_metrics(client)
    assert samples["modelserve_prediction_log_writer_up"] == 1
    assert samples["modelserve_prediction_log_writer_restarts_total"] == 0
    assert samples["modelserve_prediction_log_rejected_total"] == 0


def test_a_feature_nested_950_deep_is_refused_in_the_envelope_and_logged(
    client: TestClient,
) -> None:
    register_iris(client)
    others = {k: v for k, v in iris_instance(0).items() if k != "sepal_length"}
    deep = b"[" * 950 + b"1" + b"]" * 950  # orjson.loads takes it; the old encoder recursed
    body = orjson.dumps({"instances": [others]}).replace(
        b'[{"', b'[{"sepal_length":' + deep + b',"', 1
    )
    response = client.post(
        "/v1/models/iris/predict", content=body, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()) == {"code", "message", "details"}
    if response.status_code == 422:  # it reached the model (not refused at parse time): logged
        (logged,) = client.get("/v1/predictions").json()["data"]
        value = logged["inputs"][0]["sepal_length"]
        kept = depth_of(value)
        for _ in range(kept):
            value = value[0]
        assert value == "[" * (950 - kept) + "1" + "]" * (950 - kept)
