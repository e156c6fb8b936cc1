"""Scenario groups comparing modelserve with itself in each serving mode: scikit-learn and ONNX
Runtime (``onnx``), adaptive batching off and on (``batching``), the PostgreSQL prediction log
off and on (``logging``), and two workers against one (``workers``)."""

from __future__ import annotations

import contextlib
import importlib.util
import secrets
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from cases import (
    BATCH_ROWS,
    ONNX_TOLERANCE,
    TOLERANCE,
    V1_PREDICT,
    Case,
    batches,
    put_serving,
    register_model,
    single_bodies,
    train_hgb,
    verify_modelserve,
)
from harness import ScenarioError, Unsupported, prepare_deployment, process_memory
from report import at_least
from runner import Arm, Bench, combine, finish, run_arms, running

BATCHING_TARGET = 2.0  # throughput with adaptive batching on against off, at least
LOGGING_TARGET = 0.9  # throughput with the PostgreSQL log on against off, at least


def onnx_note(client: httpx.Client, model: str) -> str:
    """What the server says about the ONNX twin of the version serving ``model``."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed: the server cannot have used it"
    described = client.get(f"/v1/models/{model}")
    if described.status_code != 200:
        return f"GET /v1/models/{model}: {described.status_code}"
    info = described.json()
    number = info.get("aliases", {}).get("production") or info.get("latest_version")
    version = next((v for v in info.get("versions", []) if v.get("version") == number), {})
    if "onnx" not in version:
        return "the server does not say whether the version has an ONNX twin"
    if version["onnx"] is None:
        return f"v{number} has no ONNX twin: it still runs on scikit-learn"
    return (
        f"v{number} ONNX twin, max abs diff at registration {version['onnx']['max_abs_diff']:.2g}"
    )


def group_onnx(bench: Bench) -> None:
    """The iris model on scikit-learn and on ONNX Runtime, 1 and 100 rows."""
    dep = bench.sqlite()
    case, _ = bench.iris()
    path = V1_PREDICT.format("iris")
    check = [[0], [60], [120], batches(case)[0]]
    with running(bench, bench.modelserve(dep, "modelserve onnx")) as (server, client):
        client.headers.update(dep.headers)

        def switch(runtime: str) -> None:
            put_serving(client, "iris", {"runtime": runtime, "batching": None})
            tol = ONNX_TOLERANCE if runtime == "onnx" else TOLERANCE
            verify_modelserve(client, path, case, check, tol=tol, what=runtime)

        arms: dict[tuple[str, str], Arm] = {}
        for name, bodies, rows in (
            ("1-row", single_bodies(case), 1),
            (f"{BATCH_ROWS}-row", [case.body(idx) for idx in batches(case)], BATCH_ROWS),
        ):
            for runtime in ("sklearn", "onnx"):
                arms[runtime, name] = Arm(
                    f"{runtime} {name}",
                    server,
                    path,
                    bodies,
                    dep.headers,
                    prepare=partial(switch, runtime),
                    rows=rows,
                )
        run_arms(bench, list(arms.values()))
        note = onnx_note(client, "iris")
        with contextlib.suppress(ScenarioError, Unsupported):
            put_serving(client, "iris", {"runtime": "sklearn", "batching": None})
    for (runtime, _), arm in arms.items():
        if runtime == "sklearn":
            baseline = finish(bench, "onnx", arm)
        else:
            finish(bench, "onnx", arm, baseline=baseline, baseline_name="sklearn", note=note)


def group_batching(bench: Bench) -> None:
    """HistGradientBoosting, many concurrent single-row clients, batching off and on."""
    dep = bench.sqlite()
    estimator, features, rows = train_hgb(bench.args.hgb_iterations)
    case = Case("hgb", estimator, features, rows, frame=False)
    path = V1_PREDICT.format("hgb")
    connections = bench.args.batching_connections
    check = [[0], [1], [200], batches(case)[0]]
    settings: dict[str, Any] = {"max_batch_size": 64, "max_wait_ms": 2}
    with running(bench, bench.modelserve(dep, "modelserve batching")) as (server, client):
        client.headers.update(dep.headers)
        if client.get("/v1/models/hgb").status_code == 404:
            register_model(client, "hgb", estimator, features)

        def switch(batching: dict[str, Any] | None, scenario: str) -> None:
            put_serving(client, "hgb", {"runtime": "sklearn", "batching": batching})
            verify_modelserve(client, path, case, check, what=scenario)

        arms = []
        for label, batching in (("off", None), ("on", settings)):
            scenario = f"hgb 1-row x{connections} batching {label}"
            arms.append(
                Arm(
                    scenario,
                    server,
                    path,
                    single_bodies(case),
                    dep.headers,
                    prepare=partial(switch, batching, scenario),
                    connections=connections,
                )
            )
        run_arms(bench, arms)
        with contextlib.suppress(ScenarioError, Unsupported):
            put_serving(client, "hgb", {"runtime": "sklearn", "batching": None})
    off = finish(bench, "batching", arms[0])
    note = f"max_batch_size {settings['max_batch_size']}, max_wait_ms {settings['max_wait_ms']}"
    finish(
        bench,
        "batching",
        arms[1],
        baseline=off,
        baseline_name="batching off",
        note=note,
        target=f"≥{BATCHING_TARGET:.1f}x",
        judge=at_least(BATCHING_TARGET),
    )


def pg_urls(admin_url: str, database: str) -> tuple[str, str]:
    """(libpq URL, SQLAlchemy URL) of ``database`` on the admin URL's server."""
    parts = urlsplit(admin_url)
    libpq = urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))
    return libpq, "postgresql+psycopg://" + libpq.split("://", 1)[1]


def pg_execute(url: str, sql: str) -> Any:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchone() if cursor.description else None


def drop_pg(bench: Bench, database: str) -> None:
    with contextlib.suppress(Exception):
        pg_execute(bench.args.pg_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    if database in bench.pg_databases:
        bench.pg_databases.remove(database)


def group_logging(bench: Bench) -> None:
    """Single-row on PostgreSQL: prediction log off and on (two servers, one database)."""
    database = f"modelserve_bench_{secrets.token_hex(4)}"
    try:
        pg_execute(bench.args.pg_url, f'CREATE DATABASE "{database}"')
    except Exception as exc:
        raise ScenarioError(f"PostgreSQL unavailable at {bench.args.pg_url}: {exc}") from exc
    bench.pg_databases.append(database)
    try:
        libpq, url = pg_urls(bench.args.pg_url, database)
        dep = prepare_deployment(bench.tmp, "postgres", url)
        case, _ = bench.iris()
        path = V1_PREDICT.format("iris")
        check = [[0], [60], [120]]
        logged = {"off": 0, "on": 0}
        counted = {"before": 0}

        def count() -> int:
            return int(pg_execute(libpq, "SELECT count(*) FROM predictions")[0])

        def prepare(client: httpx.Client, scenario: str) -> None:
            verify_modelserve(client, path, case, check, what=scenario)
            counted["before"] = count()

        def after(label: str, client: httpx.Client) -> None:
            # Reading the log waits until what the server queued is written, so none of the log-on
            # server's records lands in the next arm's count.
            client.get("/v1/predictions", params={"limit": 1})
            logged[label] += count() - counted["before"]

        with (
            running(bench, bench.modelserve(dep, "pg log off", prediction_log="false")) as off,
            running(bench, bench.modelserve(dep, "pg log on")) as on,
        ):
            arms = []
            for label, (server, client) in (("off", off), ("on", on)):
                client.headers.update(dep.headers)
                scenario = f"PG 1-row log {label}"
                arms.append(
                    Arm(
                        scenario,
                        server,
                        path,
                        single_bodies(case),
                        dep.headers,
                        prepare=partial(prepare, client, scenario),
                        after=partial(after, label, client),
                    )
                )
            run_arms(bench, arms)
    finally:
        drop_pg(bench, database)
    off = finish(bench, "logging", arms[0], note=f"{logged['off']} predictions logged")
    if logged["off"]:
        bench.notes.append(
            "MODELSERVE_PREDICTION_LOG=false is not recognised by this modelserve: the 'log off' "
            "server still logged its predictions, so on and off measure the same."
        )
    notes = [f"{logged['on']} predictions logged"]
    if off is not None and off.rps and arms[1].results:
        on_rps = combine(arms[1].results)[0].rps
        notes.append(f"logging costs {100 * (1 - on_rps / off.rps):.1f}% req/s")
    finish(
        bench,
        "logging",
        arms[1],
        baseline=off,
        baseline_name="log off",
        note="; ".join(notes),
        target=f"≥{LOGGING_TARGET:.1f}x",
        judge=at_least(LOGGING_TARGET),
    )


def group_workers(bench: Bench) -> None:
    """``modelserve serve --workers 2``, unpinned, single-row; RSS of every process."""
    dep = bench.sqlite()
    case, _ = bench.iris()
    scenario = "modelserve --workers 2 1-row"
    path = V1_PREDICT.format("iris")
    try:
        server = bench.modelserve(dep, "modelserve workers", "--workers", "2", cpu=None)
    except Unsupported as exc:
        bench.unsupported("workers", scenario, str(exc))
        return

    def check() -> None:
        # A new connection per request, so that every worker answers some.
        with httpx.Client(
            base_url=server.base,
            headers=dep.headers,
            limits=httpx.Limits(max_keepalive_connections=0),
            timeout=60.0,
        ) as fresh:
            checks = [[i] for i in range(0, 150, 15)]
            verify_modelserve(fresh, path, case, checks, what=scenario)

    with running(bench, server):
        arm = Arm(
            scenario, server, path, single_bodies(case), dep.headers, prepare=check, pinned=False
        )
        run_arms(bench, [arm])
        processes = process_memory(server.pids())
    memory = ", ".join(f"{p['role']} {p['pid']}: {p['rss_mib']:.0f} MiB" for p in processes)
    bench.startup.append(
        {
            "server": "modelserve --workers 2 (after load)",
            "ready_s": server.ready_seconds,
            "rss_mib": sum(p["rss_mib"] for p in processes),
            "processes": processes,
        }
    )
    finish(
        bench,
        "workers",
        arm,
        baseline=bench.find("modelserve 1-row"),
        baseline_name="1 worker on CPU 0",
        note=f"server and load generator unpinned; RSS {memory}",
    )
