"""Adaptive batching over HTTP: concurrent requests merged into few model calls, each answered
and logged as if alone, a failing request failing alone; off by default."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from factories import (
    IRIS_FEATURES,
    fit_iris,
    iris_frame,
    iris_schema,
    metric_samples,
    register,
    register_iris,
    to_bytes,
)
from fastapi.testclient import TestClient
from httpx import Response

from modelserve.inference.batching import Batcher, BatcherStats
from modelserve.inference.cache import cache_key
from modelserve.lifecycle.routing import Target

FRAME = iris_frame()
MODEL = fit_iris()  # what register_iris registers (deterministic fit)
EXTREME = dict.fromkeys(IRIS_FEATURES, 1e308)  # valid input, non-finite model output


def rows(indices: list[int]) -> list[dict[str, float]]:
    return [{f: float(FRAME.iloc[i][f]) for f in IRIS_FEATURES} for i in indices]


def state_of(client: TestClient) -> Any:
    return client.app.state.modelserve  # type: ignore[attr-defined]


def batch_on(client: TestClient, model: str, max_batch_size: int, max_wait_ms: float) -> None:
    settings = {"max_batch_size": max_batch_size, "max_wait_ms": max_wait_ms}
    response = client.put(f"/v1/models/{model}/serving", json={"batching": settings})
    assert response.status_code == 200, response.text


def batcher_of(client: TestClient, model: str, version: int) -> Batcher:
    resolved = state_of(client).inference.resolve(Target(model, version=version))
    batcher: Batcher = state_of(client).inference.batchers.get(cache_key(resolved))
    return batcher


@contextmanager
def held_open(batcher: Batcher) -> Iterator[None]:
    """Tell the batcher one more request is on its way: the batch the burst starts then waits
    for the rest of the burst (until full, or its max_wait) instead of running at once."""
    batcher.reserve()
    try:
        yield
    finally:
        batcher.cancel()


def burst(client: TestClient, path: str, bodies: list[Any]) -> list[Response]:
    """POST every body at once from its own thread, started together by a barrier."""
    barrier = threading.Barrier(len(bodies))

    def send(body: Any) -> Response:
        barrier.wait()
        return client.post(path, json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def log_entries(client: TestClient, model: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"model": model, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/predictions", params=params).json()
        entries.extend(page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return entries


def assert_answers_like_sklearn(body: dict[str, Any], instances: list[dict[str, float]]) -> None:
    matrix = np.array([[row[f] for f in IRIS_FEATURES] for row in instances])
    assert body["predictions"] == MODEL.predict(matrix).tolist()
    expected = MODEL.predict_proba(matrix)
    got = [[p[str(label)] for label in MODEL.classes_] for p in body["probabilities"]]
    # Merged calls may differ from single ones in the last bits (BLAS kernels by batch size).
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def requests_of_varied_sizes(count: int) -> list[list[dict[str, float]]]:
    """``count`` requests of 1 to 3 different iris rows each."""
    return [rows([(7 * n + k) % 150 for k in range(1 + n % 3)]) for n in range(count)]


def test_batching_is_off_by_default(client: TestClient) -> None:
    register_iris(client)
    assert client.get("/v1/models/iris").json()["serving"]["batching"] is None
    bodies = [{"instances": instances} for instances in requests_of_varied_sizes(8)]
    for response, body in zip(
        burst(client, "/v1/models/iris/predict", bodies), bodies, strict=True
    ):
        assert response.status_code == 200, response.text
        assert_answers_like_sklearn(response.json(), body["instances"])
    assert state_of(client).inference.batchers.stats() == {}


def test_concurrent_requests_are_merged_and_each_answered_and_logged_once(
    client: TestClient,
) -> None:
    register_iris(client)
    requests = requests_of_varied_sizes(12)
    total_rows = sum(len(r) for r in requests)
    batch_on(client, "iris", max_batch_size=total_rows, max_wait_ms=1000)
    batcher = batcher_of(client, "iris", 1)
    bodies = [{"instances": instances} for instances in requests]
    with held_open(batcher):
        responses = burst(client, "/v1/models/iris/predict", bodies)
    for response, instances in zip(responses, requests, strict=True):
        assert response.status_code == 200, response.text
        assert_answers_like_sklearn(response.json(), instances)
    stats: BatcherStats = batcher.stats()
    assert stats.requests == len(requests)
    assert stats.rows == total_rows
    assert stats.model_calls < len(requests)  # merged: fewer model calls than requests
    assert stats.merged_calls >= 1
    assert stats.largest_batch > 1
    assert stats.fallbacks == 0
    logged = {e["request_id"]: e for e in log_entries(client, "iris")}
    assert len(logged) == len(requests)  # once each
    for response, instances in zip(responses, requests, strict=True):
        body = response.json()
        entry = logged[body["request_id"]]
        assert (entry["status"], entry["http_status"], entry["n_rows"]) == (
            "ok",
            200,
            len(instances),
        )
        assert entry["inputs"] == instances
        assert entry["outputs"] == {
            "predictions": body["predictions"],
            "probabilities": body["probabilities"],
        }


def test_a_merged_call_never_exceeds_max_batch_size_rows(client: TestClient) -> None:
    register_iris(client)
    batch_on(client, "iris", max_batch_size=4, max_wait_ms=1000)
    batcher = batcher_of(client, "iris", 1)
    requests = [rows([n * 9]) for n in range(16)]
    with held_open(batcher):
        responses = burst(client, "/v1/models/iris/predict", [{"instances": r} for r in requests])
    for response, instances in zip(responses, requests, strict=True):
        assert response.status_code == 200, response.text
        assert_answers_like_sklearn(response.json(), instances)
    stats = batcher.stats()
    assert stats.merged_calls >= 1
    assert stats.largest_rows == 4  # merged up to the bound, never past it
    assert stats.model_calls >= 16 / 4
    samples = metric_samples(client)
    labels = (("runtime", "sklearn"), ("version_id", str(cache_key_of(client)[0])))
    assert samples[("modelserve_batching_requests_total", labels)] == 16
    assert samples[("modelserve_batching_rows_total", labels)] == 16
    assert samples[("modelserve_batching_largest_rows", labels)] == 4
    assert samples[("modelserve_batching_model_calls_total", labels)] == stats.model_calls


def cache_key_of(client: TestClient) -> tuple[int, str]:
    return cache_key(state_of(client).inference.resolve(Target("iris", version=1)))


def test_a_row_with_a_non_finite_output_fails_only_its_own_request(client: TestClient) -> None:
    register_iris(client)
    requests = requests_of_varied_sizes(10)
    bad = 4
    requests[bad] = [*rows([1]), EXTREME]  # its second row overflows the model
    total_rows = sum(len(r) for r in requests)
    batch_on(client, "iris", max_batch_size=total_rows, max_wait_ms=1000)
    batcher = batcher_of(client, "iris", 1)
    with held_open(batcher):
        responses = burst(client, "/v1/models/iris/predict", [{"instances": r} for r in requests])
    for n, (response, instances) in enumerate(zip(responses, requests, strict=True)):
        if n == bad:
            assert response.status_code == 422, response.text
            details = response.json()["details"]
            assert [(p["row"], p["type"]) for p in details] == [(1, "non_finite_output")]
        else:
            assert response.status_code == 200, response.text
            assert_answers_like_sklearn(response.json(), instances)
    stats = batcher.stats()
    assert stats.merged_calls >= 1
    assert stats.fallbacks >= 1  # the merged call that held the bad row was split up
    entries = log_entries(client, "iris")
    assert len(entries) == len(requests)
    by_status = sorted((e["status"], e["http_status"]) for e in entries)
    assert by_status == [("invalid", 422)] + [("ok", 200)] * (len(requests) - 1)
    [failed] = [e for e in entries if e["status"] == "invalid"]
    assert failed["error"]["details"] == responses[bad].json()["details"]


def test_a_model_exception_fails_only_its_own_request(client: TestClient) -> None:
    # Logistic regression cannot take NaN: a null (allowed by this schema) makes it raise.
    response = register(client, "iris", to_bytes(fit_iris(), "skops"), iris_schema(nullable=True))
    assert response.status_code == 201, response.text
    requests = requests_of_varied_sizes(8)
    bad = 3
    requests[bad] = [rows([0])[0] | {"petal_width": None}]
    total_rows = sum(len(r) for r in requests)
    batch_on(client, "iris", max_batch_size=total_rows, max_wait_ms=1000)
    batcher = batcher_of(client, "iris", 1)
    with held_open(batcher):
        responses = burst(client, "/v1/models/iris/predict", [{"instances": r} for r in requests])
    for n, (response, instances) in enumerate(zip(responses, requests, strict=True)):
        if n == bad:
            assert response.status_code == 500, response.text
            assert response.json()["code"] == "inference_error"
        else:
            assert response.status_code == 200, response.text
            assert_answers_like_sklearn(response.json(), instances)
    assert batcher.stats().fallbacks >= 1
    entries = log_entries(client, "iris")
    assert sorted(e["http_status"] for e in entries) == [200] * (len(requests) - 1) + [500]


def test_many_concurrent_clients_with_batching(client: TestClient) -> None:
    """No merge is forced here: whatever batches form, every answer is the caller's own."""
    register_iris(client)
    batch_on(client, "iris", max_batch_size=16, max_wait_ms=5)
    requests = requests_of_varied_sizes(40)
    with ThreadPoolExecutor(16) as pool:
        responses = list(
            pool.map(
                lambda r: client.post("/v1/models/iris/predict", json={"instances": r}), requests
            )
        )
    for response, instances in zip(responses, requests, strict=True):
        assert response.status_code == 200, response.text
        assert_answers_like_sklearn(response.json(), instances)
    assert len(log_entries(client, "iris")) == len(requests)
    stats = batcher_of(client, "iris", 1).stats()
    assert stats.requests == len(requests)
    assert stats.queued == 0


def test_columnar_requests_and_v2_requests_join_batches(client: TestClient) -> None:
    register_iris(client)
    requests = requests_of_varied_sizes(6)
    total_rows = sum(len(r) for r in requests)
    batch_on(client, "iris", max_batch_size=total_rows, max_wait_ms=1000)
    batcher = batcher_of(client, "iris", 1)
    bodies: list[Any] = []
    for n, instances in enumerate(requests):
        data = [[row[f] for f in IRIS_FEATURES] for row in instances]
        if n % 2:
            bodies.append({"columns": IRIS_FEATURES, "data": data})
        else:
            bodies.append({"instances": instances})
    with held_open(batcher):
        responses = burst(client, "/v1/models/iris/predict", bodies)
    for response, instances in zip(responses, requests, strict=True):
        assert response.status_code == 200, response.text
        assert_answers_like_sklearn(response.json(), instances)
    assert batcher.stats().model_calls < len(requests)
    # The V2 protocol goes through the same batcher.
    tensor = {
        "name": "input",
        "shape": [2, 4],
        "datatype": "FP64",
        "data": [5.1, 3.5, 1.4, 0.2] * 2,
    }
    v2 = client.post("/v2/models/iris/infer", json={"inputs": [tensor]})
    assert v2.status_code == 200, v2.text
    assert batcher.stats().requests == len(requests) + 1


def test_canary_and_shadow_are_batched_by_the_version_that_serves(client: TestClient) -> None:
    register_iris(client, alias="production")
    register_iris(client)
    register_iris(client)
    policy = {"canary": {"version": 2, "percent": 100}, "shadow": {"version": 3}}
    assert client.put("/v1/models/iris/traffic", json=policy).status_code == 200
    batch_on(client, "iris", max_batch_size=8, max_wait_ms=20)
    requests = requests_of_varied_sizes(6)
    responses = burst(client, "/v1/models/iris/predict", [{"instances": r} for r in requests])
    for response, instances in zip(responses, requests, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["version"] == 2
        assert_answers_like_sklearn(response.json(), instances)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        entries = log_entries(client, "iris")
        if len(entries) >= 2 * len(requests):
            break
        time.sleep(0.05)
    variants = sorted((e["version"], e["variant"]) for e in entries)
    assert variants == [(2, "canary")] * len(requests) + [(3, "shadow")] * len(requests)
    stats = state_of(client).inference.batchers.stats()
    served = {key[0]: s.requests for key, s in stats.items()}
    version_ids = {
        n: state_of(client).inference.resolve(Target("iris", version=n)).version_id
        for n in (1, 2, 3)
    }
    assert served == {version_ids[2]: len(requests), version_ids[3]: len(requests)}


@pytest.mark.parametrize("form", ["instances", "columnar"])
def test_invalid_requests_never_reach_the_batch(client: TestClient, form: str) -> None:
    register_iris(client)
    batch_on(client, "iris", max_batch_size=4, max_wait_ms=1000)
    body: Any = {"instances": [rows([0])[0] | {"sepal_length": "5"}]}
    if form == "columnar":
        body = {"columns": IRIS_FEATURES, "data": [["5", 3.5, 1.4, 0.2]]}
    # Refused on a worker thread (route and version not yet in memory), then once they are
    # (where the event loop would queue a valid request itself).
    for _ in range(2):
        response = client.post("/v1/models/iris/predict", json=body)
        assert response.status_code == 422
        assert response.json()["details"][0]["type"] == "wrong_type"
        ok = client.post("/v1/models/iris/predict", json={"instances": rows([0])})
        assert ok.status_code == 200
    stats = batcher_of(client, "iris", 1).stats()
    assert (stats.requests, stats.model_calls, stats.reserved) == (2, 2, 0)
    entries = log_entries(client, "iris")
    assert sorted(e["http_status"] for e in entries) == [200, 200, 422, 422]  # once each


def test_registry_changes_reach_requests_queued_from_the_event_loop(client: TestClient) -> None:
    register_iris(client, alias="production")
    register_iris(client)
    batch_on(client, "iris", max_batch_size=8, max_wait_ms=5)
    v1, v2 = batcher_of(client, "iris", 1), batcher_of(client, "iris", 2)

    def version_served() -> int:
        response = client.post("/v1/models/iris/predict", json={"instances": rows([0])})
        assert response.status_code == 200, response.text
        return int(response.json()["version"])

    assert [version_served() for _ in range(3)] == [1, 1, 1]
    assert v1.stats().requests == 3
    moved = client.put("/v1/models/iris/aliases/production", json={"version": 2})
    assert moved.status_code == 200, moved.text
    assert [version_served() for _ in range(3)] == [2, 2, 2]
    assert (v1.stats().requests, v2.stats().requests) == (3, 3)
    off = client.put("/v1/models/iris/serving", json={"batching": None})
    assert off.status_code == 200, off.text
    assert [version_served() for _ in range(3)] == [2, 2, 2]
    assert (v1.stats().requests, v2.stats().requests) == (3, 3)  # no longer batched
