"""Scenario groups against a baseline outside modelserve: start-up and memory next to the
floor (``startup``), single-row requests against the bare FastAPI floor (``floor``), and
100-row requests against ``predict_proba`` in this process (``batch``)."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from cases import (
    BATCH_ROWS,
    ONNX_TOLERANCE,
    TOLERANCE,
    V1_PREDICT,
    Case,
    batches,
    floor_bodies,
    put_serving,
    single_bodies,
    verify_floor,
    verify_modelserve,
)
from harness import (
    MIB,
    MULTI_CPU,
    SERVER_CPU,
    Deployment,
    ScenarioError,
    Server,
    Unsupported,
    console,
    rss_bytes,
)
from report import Row, at_least
from runner import Arm, Bench, finish, run_arms, running

WARMUP_REQUESTS = 200
FLOOR_TARGET = (1.0, 1.5)  # throughput ratio at least, p99 ratio at most
BATCH_TARGET = 0.5  # rows/s of 100-row requests against in-process predict_proba, at least
STARTUP_TARGET_S = 2.0  # spawn to /readyz 200 with one small model, under


def group_startup(bench: Bench) -> None:
    """Spawn to /readyz 200 (median of --startup-runs) and RSS after a warm-up."""
    dep = bench.sqlite()
    case, _ = bench.iris()
    json_type = {"content-type": "application/json"}
    servers: dict[str, tuple[Callable[[], Server], str, list[bytes], dict[str, str]]] = {
        "modelserve": (
            lambda: bench.modelserve(dep, "startup"),
            V1_PREDICT.format("iris"),
            single_bodies(case),
            dep.headers | json_type,
        ),
        "floor": (bench.floor, "/predict", floor_bodies(case), json_type),
    }
    ready: dict[str, list[float]] = {label: [] for label in servers}
    rss: dict[str, list[int]] = {label: [] for label in servers}
    for _ in range(bench.args.startup_runs):
        for label, (start, path, bodies, headers) in servers.items():
            server = start()
            with running(bench, server) as (_, client):
                ready[label].append(server.ready_seconds)
                for n in range(WARMUP_REQUESTS):
                    response = client.post(path, content=bodies[n % len(bodies)], headers=headers)
                    if response.status_code != 200:
                        raise ScenarioError(f"{label} warm-up: {response.status_code}")
                rss[label].append(sum(rss_bytes(pid) or 0 for pid in server.pids()))
    for label in servers:
        entry = {
            "server": label,
            "ready_s": statistics.median(ready[label]),
            "ready_runs_s": ready[label],
            "rss_mib": statistics.median(rss[label]) / MIB,
            "rss_runs_mib": [r / MIB for r in rss[label]],
        }
        bench.startup.append(entry)
        if label == "modelserve":
            entry["target"] = f"< {STARTUP_TARGET_S:.0f} s"
            entry["met"] = entry["ready_s"] < STARTUP_TARGET_S
        console.print(
            f"  {label}: spawn to ready {entry['ready_s']:.2f} s (runs: "
            f"{', '.join(f'{r:.2f}' for r in ready[label])}), RSS after {WARMUP_REQUESTS} "
            f"predictions {entry['rss_mib']:.0f} MiB"
        )


FLOOR_MODELS = ("iris", "hgb")
"""The README's demo model, and a HistGradientBoosting classifier (``--hgb-iterations``)."""


def group_floor(bench: Bench) -> None:
    """Single-row: the bare FastAPI floor against modelserve with auth, validation, logging."""
    dep = bench.sqlite()
    for model in FLOOR_MODELS:
        floor_one(bench, dep, model)


HGB_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("batching on", {"runtime": "sklearn", "batching": {"max_batch_size": 16, "max_wait_ms": 2}}),
    ("onnx", {"runtime": "onnx", "batching": None}),
)
"""What the HistGradientBoosting model is also timed with in the floor group: its predict_proba
for one row (300 trees, one Python call each) is most of a request, so the serving options made
for such models are where it gains."""


def floor_one(bench: Bench, dep: Deployment, model: str) -> None:
    """The floor group for one model: defaults, and for ``hgb`` each of ``HGB_OPTIONS``."""
    case, _ = bench.case(model)
    path = V1_PREDICT.format(model)
    check = [[0], [60], [120]]
    defaults: dict[str, Any] = {"runtime": "sklearn", "batching": None}
    options = [("", defaults)] + (list(HGB_OPTIONS) if model == "hgb" else [])
    with (
        running(bench, bench.floor(model)) as (floor_server, floor_client),
        running(bench, bench.modelserve(dep, f"modelserve {model}")) as (server, client),
    ):
        client.headers.update(dep.headers)

        def switch(settings: dict[str, Any], scenario: str) -> None:
            put_serving(client, model, settings)
            tol = ONNX_TOLERANCE if settings["runtime"] == "onnx" else TOLERANCE
            verify_modelserve(client, path, case, check, what=scenario, tol=tol)

        floor = Arm(
            f"floor {model} 1-row (bare FastAPI)",
            floor_server,
            "/predict",
            floor_bodies(case),
            {},
            prepare=lambda: verify_floor(floor_client, case, [i[0] for i in check]),
        )
        arms = [floor]
        for label, settings in options:
            scenario = f"modelserve {model} 1-row" + (f", {label}" if label else "")
            prepare = partial(switch, settings, scenario)
            arms.append(Arm(scenario, server, path, single_bodies(case), dep.headers, prepare))
        run_arms(bench, arms)
        with contextlib.suppress(ScenarioError, Unsupported):
            put_serving(client, model, defaults)
    floor_row = finish(bench, "floor", floor)

    def judge(row: Row) -> bool | None:
        if row.ratio is None or row.p99_ratio is None:
            return None
        return row.ratio >= FLOOR_TARGET[0] and row.p99_ratio <= FLOOR_TARGET[1]

    for arm, (_, settings) in zip(arms[1:], options, strict=True):
        finish(
            bench,
            "floor",
            arm,
            baseline=floor_row,
            baseline_name="floor",
            target=f"≥{FLOOR_TARGET[0]:.1f}x, p99 ≤{FLOOR_TARGET[1]:.1f}x",
            judge=judge,
            note="API key, schema validation, prediction log on SQLite"
            + ("" if settings is defaults else f"; serving {orjson.dumps(settings).decode()}"),
        )


def in_process(case: Case, sets: list[list[int]], seconds: float) -> dict[str, float]:
    """``predict_proba`` on prepared inputs, here, pinned to the server's CPU."""
    inputs = [case.model_input(idx) for idx in sets]
    previous = os.sched_getaffinity(0) if MULTI_CPU else None
    if SERVER_CPU is not None:
        os.sched_setaffinity(0, {SERVER_CPU})
    try:
        for x in inputs:
            case.estimator.predict_proba(x)
        latencies: list[float] = []
        stop = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < stop:
            began = time.perf_counter()
            case.estimator.predict_proba(inputs[n % len(inputs)])
            latencies.append(time.perf_counter() - began)
            n += 1
    finally:
        if previous is not None:
            os.sched_setaffinity(0, previous)
    latencies.sort()
    return {
        "calls_per_s": len(latencies) / sum(latencies),
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def group_batch(bench: Bench) -> None:
    """100-row requests, instances and columnar forms, against in-process predict_proba."""
    dep = bench.sqlite()
    for model in FLOOR_MODELS:
        batch_one(bench, dep, model)


def batch_one(bench: Bench, dep: Deployment, model: str) -> None:
    """The batch group for one model."""
    case, _ = bench.case(model)
    sets = batches(case)
    base = in_process(case, sets, max(1.0, min(bench.args.duration, 5.0)))
    kind = "DataFrame" if case.frame else "matrix"
    baseline = bench.record(
        Row(
            "batch",
            f"in-process {model} predict_proba {BATCH_ROWS}-row",
            rps=base["calls_per_s"],
            rows_per_s=base["calls_per_s"] * BATCH_ROWS,
            p50_ms=base["p50_ms"],
            p99_ms=base["p99_ms"],
            note=f"on a prepared {kind}, one thread, CPU 0; p50/p99 per call",
        )
    )
    path = V1_PREDICT.format(model)
    with running(bench, bench.modelserve(dep, f"modelserve {model} batch")) as (server, client):
        client.headers.update(dep.headers)
        arms = []
        for form in ("instances", "columnar"):
            scenario = f"modelserve {model} {BATCH_ROWS}-row {form}"
            arms.append(
                Arm(
                    scenario,
                    server,
                    path,
                    [case.body(idx, form) for idx in sets],
                    dep.headers,
                    prepare=partial(
                        verify_modelserve, client, path, case, sets[:2], form=form, what=scenario
                    ),
                    rows=BATCH_ROWS,
                )
            )
        run_arms(bench, arms)
    for arm in arms:
        finish(
            bench,
            "batch",
            arm,
            baseline=baseline,
            baseline_name="in-process",
            compare_p99=False,
            target=f"≥{BATCH_TARGET:.1f}x",
            judge=at_least(BATCH_TARGET),
        )
