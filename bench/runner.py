"""What a run shares (``Bench``: options, child processes, the SQLite deployment and its
models, results), the load generator driven from here, and the arms of an A/B group taking
turns."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from cases import Case, iris_rows, register_direct, train_hgb
from floor import export_artifact, load_estimator
from harness import (
    BENCH_DIR,
    LOAD_CPU,
    RESULTS_DIR,
    SERVER_CPU,
    Children,
    Deployment,
    ScenarioError,
    Server,
    Unsupported,
    clean_env,
    console,
    cpu_seconds,
    log_tail,
    prepare_deployment,
    start_server,
)
from load import LoadResult, LoadSpec
from report import Row, describe, ratio

SATURATED_CPU = 90.0


@dataclass
class Bench:
    """Everything a run shares: options, child processes, temp state, results."""

    args: argparse.Namespace
    tmp: Path
    children: Children = field(default_factory=Children)
    rows: list[Row] = field(default_factory=list)
    startup: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pg_databases: list[str] = field(default_factory=list)
    _sqlite: Deployment | None = None
    _cases: dict[str, tuple[Case, Path]] = field(default_factory=dict)

    # ---- shared set-up

    def sqlite(self) -> Deployment:
        if self._sqlite is None:
            console.print("[dim]preparing a SQLite deployment with the demo model...[/]")
            self._sqlite = prepare_deployment(self.tmp, "sqlite")
        return self._sqlite

    def iris(self) -> tuple[Case, Path]:
        """The demo model as stored in the SQLite deployment, exported for the floor."""
        return self.case("iris")

    def case(self, name: str) -> tuple[Case, Path]:
        """A model of the SQLite deployment (``iris``, the demo's; ``hgb``, a
        HistGradientBoosting classifier registered here), and its artifact for the floor."""
        if name not in self._cases:
            dep = self.sqlite()
            rows = iris_rows()
            if name == "hgb":
                estimator, features, rows = train_hgb(self.args.hgb_iterations)
                register_direct(dep.database_url, name, estimator, features)
            artifact, features = export_artifact(dep.database_url, name, self.tmp)
            estimator = load_estimator(artifact)
            frame = hasattr(estimator, "feature_names_in_")
            self._cases[name] = (Case(name, estimator, features, rows, frame), artifact)
        return self._cases[name]

    def modelserve(
        self, dep: Deployment, label: str, *args: str, cpu: int | None = SERVER_CPU, **settings: str
    ) -> Server:
        def cmd(port: int) -> list[str]:
            return [sys.executable, "-m", "modelserve", "serve", "--port", str(port), *args]

        log = self.tmp / "logs" / f"{label.replace(' ', '_')}.log"
        return start_server(self.children, label, cmd, dep.env(**settings), log, cpu)

    def floor(self, model: str = "iris") -> Server:
        case, artifact = self.case(model)

        def cmd(port: int) -> list[str]:
            floor_py = str(BENCH_DIR / "floor.py")
            columns = ",".join(case.features) if case.frame else ""
            return [
                sys.executable,
                floor_py,
                str(artifact),
                "--columns",
                columns,
                "--port",
                str(port),
            ]

        log = self.tmp / "logs" / f"floor-{model}.log"
        return start_server(self.children, "floor", cmd, clean_env(), log, SERVER_CPU)

    # ---- load

    def load(
        self,
        server: Server,
        path: str,
        bodies: list[bytes],
        headers: dict[str, str],
        *,
        connections: int | None = None,
        pinned: bool = True,
    ) -> tuple[LoadResult, float]:
        """Drive ``server`` from a separate process; returns the result and the server's CPU
        use as a share of one core over the run."""
        spec = LoadSpec(
            url=server.base + path,
            bodies=[b.decode() for b in bodies],
            headers=headers,
            connections=connections or self.args.connections,
            duration=self.args.duration,
            warmup=self.args.warmup,
            client=self.args.client,
            cpu=LOAD_CPU if pinned else None,
        )
        pids = server.pids()
        cpu_before, wall_before = cpu_seconds(pids), time.perf_counter()
        proc = self.children.spawn(
            [sys.executable, str(BENCH_DIR / "load.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        limit = spec.duration + spec.warmup + 120
        try:
            out, err = proc.communicate(orjson.dumps(asdict(spec)), timeout=limit)
        finally:
            self.children.stop(proc)
        server_cpu = 100 * (cpu_seconds(pids) - cpu_before) / (time.perf_counter() - wall_before)
        if proc.returncode != 0:
            raise ScenarioError(f"load generator failed:\n{err.decode(errors='replace')[-2000:]}")
        result = LoadResult(**json.loads(out))
        if server.proc.poll() is not None:
            raise ScenarioError(f"{server.label} died under load:\n{log_tail(server.log)}")
        if result.requests == 0:
            raise ScenarioError(
                f"no request to {server.label} both started after the {spec.warmup:g} s warm-up "
                f"and finished within {spec.duration:g} s (statuses {result.statuses}, "
                f"{result.in_flight} still in flight at the end; {result.error_sample})"
            )
        return result, server_cpu

    def record(self, row: Row) -> Row:
        self.rows.append(row)
        console.print(f"  {describe(row)}")
        return row

    def measured(
        self,
        group: str,
        scenario: str,
        result: LoadResult,
        server_cpu: float,
        rows_per_request: int,
        *,
        baseline: Row | None = None,
        baseline_name: str = "",
        compare_p99: bool = True,
        target: str = "",
        judge: Callable[[Row], bool | None] | None = None,
        note: str = "",
    ) -> Row:
        """Record a load result; with a baseline, the ratios of rows/s, p99 and rows per server
        CPU-second to it."""
        notes = [note] if note else []
        if result.errors:
            notes.append(f"{result.errors} failed requests, e.g. {result.error_sample}")
        if result.cpu_percent > SATURATED_CPU:
            notes.append(f"load generator near saturation ({result.cpu_percent:.0f}% CPU)")
        row = Row(
            group=group,
            scenario=scenario,
            status="ok" if not result.errors else "errors",
            rps=result.rps,
            rows_per_s=result.rps * rows_per_request,
            p50_ms=result.p50_ms,
            p99_ms=result.p99_ms,
            server_cpu=server_cpu,
            load_cpu=result.cpu_percent,
            per_cpu_second=result.rps / (server_cpu / 100) if server_cpu > 0 else None,
            load=asdict(result),
            target=target,
        )
        if baseline is not None:
            row.ratio = ratio(row.rows_per_s, baseline.rows_per_s)
            row.ratio_to = baseline_name
            if compare_p99:
                row.p99_ratio = ratio(row.p99_ms, baseline.p99_ms)
            if row.per_cpu_second and baseline.per_cpu_second:
                cpu_ratio = ratio(row.per_cpu_second * rows_per_request, baseline.rows_per_cpu_s)
                row.cpu_ratio = cpu_ratio
        if judge is not None:
            row.met = judge(row)
        row.note = "; ".join(notes)
        return self.record(row)

    def unsupported(self, group: str, scenario: str, why: str) -> Row:
        return self.record(Row(group, scenario, status="unsupported", note=why))

    def failed(self, group: str, scenario: str, why: str) -> Row:
        return self.record(Row(group, scenario, status="failed", note=why))

    def find(self, scenario: str) -> Row | None:
        for row in self.rows:
            if row.scenario == scenario and row.status == "ok":
                return row
        return None


@contextlib.contextmanager
def running(bench: Bench, server: Server) -> Iterator[tuple[Server, httpx.Client]]:
    """``server`` and a client on it; the server is stopped afterwards."""
    try:
        with httpx.Client(base_url=server.base, timeout=60.0) as client:
            yield server, client
    finally:
        bench.children.stop(server.proc)


@dataclass
class Arm:
    """One configuration an A/B group times. A group's arms take turns, round after round
    (``--rounds``), so slow drift on a shared machine hits them alike; each reports the median
    over its rounds."""

    scenario: str
    server: Server
    path: str
    bodies: list[bytes]
    headers: dict[str, str]
    prepare: Callable[[], None]
    """Run before each timed round: switch settings and check the answers."""
    rows: int = 1
    connections: int | None = None
    pinned: bool = True
    after: Callable[[], None] | None = None
    results: list[tuple[LoadResult, float]] = field(default_factory=list)
    status: str = "ok"
    why: str = ""


def run_arms(bench: Bench, arms: list[Arm]) -> None:
    """Time every arm once per round; an arm whose preparation fails drops out."""
    for _ in range(bench.args.rounds):
        for arm in arms:
            if arm.status != "ok":
                continue
            try:
                arm.prepare()
                result = bench.load(
                    arm.server,
                    arm.path,
                    arm.bodies,
                    arm.headers,
                    connections=arm.connections,
                    pinned=arm.pinned,
                )
            except (ScenarioError, Unsupported) as exc:
                arm.status = "unsupported" if isinstance(exc, Unsupported) else "failed"
                arm.why = str(exc)
                continue
            arm.results.append(result)
            if arm.after is not None:
                arm.after()


def combine(results: list[tuple[LoadResult, float]]) -> tuple[LoadResult, float, list[Any]]:
    """The median round's figures (rates and percentiles taken separately), the median server
    CPU use, and each round's figures."""
    loads = [r for r, _ in results]
    rounds = [
        {"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "server_cpu": cpu}
        for r, cpu in results
    ]
    if len(loads) == 1:
        return loads[0], results[0][1], rounds
    med = statistics.median
    statuses: dict[str, int] = {}
    for r in loads:
        for code, count in r.statuses.items():
            statuses[code] = statuses.get(code, 0) + count
    combined = LoadResult(
        requests=sum(r.requests for r in loads),
        errors=sum(r.errors for r in loads),
        elapsed=sum(r.elapsed for r in loads),
        rps=med(r.rps for r in loads),
        p50_ms=med(r.p50_ms for r in loads),
        p90_ms=med(r.p90_ms for r in loads),
        p99_ms=med(r.p99_ms for r in loads),
        max_ms=max(r.max_ms for r in loads),
        mean_ms=med(r.mean_ms for r in loads),
        statuses=statuses,
        error_sample=next((r.error_sample for r in loads if r.error_sample), None),
        cpu_percent=med(r.cpu_percent for r in loads),
        in_flight=sum(r.in_flight for r in loads),
    )
    return combined, med(cpu for _, cpu in results), rounds


def finish(bench: Bench, group: str, arm: Arm, **options: Any) -> Row | None:
    """Record an arm's row (``options`` as for ``Bench.measured``); None if it gave no number."""
    if arm.status != "ok" or not arm.results:
        if arm.status == "unsupported":
            bench.unsupported(group, arm.scenario, arm.why)
        else:
            bench.failed(group, arm.scenario, arm.why or "not run")
        return None
    result, cpu, rounds = combine(arm.results)
    row = bench.measured(group, arm.scenario, result, cpu, arm.rows, **options)
    row.rounds = rounds
    return row


def write_results(bench: Bench, started: datetime, info: dict[str, Any], status: str) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    document = {
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "status": status,
        "args": vars(bench.args),
        "machine": info | {"load_average_end": os.getloadavg()},
        "rows": [asdict(r) for r in bench.rows],
        "startup": bench.startup,
        "notes": bench.notes,
    }
    path.write_bytes(
        orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    return path
