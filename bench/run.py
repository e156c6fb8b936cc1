"""Throughput benchmark: modelserve against a minimal FastAPI floor and against itself in each
serving mode. Not run in CI.

Run: ``python bench/run.py [--duration 10] [--only floor batch ...] [--connections 16]``.

Every server runs pinned to CPU 0 with one worker (except ``--workers 2``, which is left
unpinned), on its own data dir (SQLite) or its own PostgreSQL database, both thrown away
afterwards. The load generator (``bench/load.py``) runs in its own process pinned to CPU 1:
closed-loop workers over keep-alive connections, a warm-up, then per-request latencies for
``--duration`` seconds. Before anything is timed, every scenario checks the server's answers
against scikit-learn run here on the same estimator (labels equal, probabilities within 1e-6,
or 1e-5 on ONNX Runtime) and stops with a message if they differ. The scenarios a group
compares take turns (``--rounds N`` times each; medians reported), so drift on a shared machine
hits them alike; the server's CPU use is measured too, and requests per server CPU-second are
steadier than req/s when something else competes for CPU 0.

Scenario groups (``--only``):

* ``startup``: spawn to ``/readyz`` 200 with the demo model, and resident memory after a
  warm-up, for modelserve and the floor.
* ``floor``: single-row requests to ``bench/floor.py`` (the same iris estimator behind a bare
  FastAPI endpoint) and to modelserve with authentication, validation and logging on.
  Targets: throughput ratio >= 1.0, p99 ratio <= 1.5.
* ``batch``: 100-row requests, ``{"instances": [...]}`` and the columnar
  ``{"columns": [...], "data": [...]}`` form, in rows/s against ``predict_proba`` on the same
  batches in this process.
* ``onnx``: the same model on scikit-learn and on ONNX Runtime (``PUT .../serving``), 1 and 100
  rows.
* ``batching``: a HistGradientBoosting model under 64 concurrent single-row clients, adaptive
  batching off and on.
* ``logging``: single-row on PostgreSQL with the prediction log on and off
  (``MODELSERVE_PREDICTION_LOG=false``).
* ``workers``: ``modelserve serve --workers 2`` (unpinned), throughput and memory per process.

Results are printed as a table and written to ``bench/results/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import orjson
import pandas as pd
from floor import export_artifact, load_estimator
from load import LoadResult, LoadSpec
from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
MULTI_CPU = (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
SERVER_CPU = 0 if MULTI_CPU else None
LOAD_CPU = 1 if MULTI_CPU else None
GROUPS = ("startup", "floor", "batch", "onnx", "batching", "logging", "workers")
BATCH_ROWS = 100
TOLERANCE = 1e-6
ONNX_TOLERANCE = 1e-5
READY_TIMEOUT = 120.0
WARMUP_REQUESTS = 200
MIB = 1024 * 1024
FLOOR_TARGET = (1.0, 1.5)  # throughput ratio at least, p99 ratio at most
BATCH_TARGET = 0.5  # rows/s of 100-row requests against in-process predict_proba, at least
BATCHING_TARGET = 2.0  # throughput with adaptive batching on against off, at least
LOGGING_TARGET = 0.9  # throughput with the PostgreSQL log on against off, at least
STARTUP_TARGET_S = 2.0  # spawn to /readyz 200 with one small model, under


def at_least(target: float) -> Callable[[Row], bool | None]:
    """A judge: the row's throughput ratio to its baseline is at least ``target``."""
    return lambda row: None if row.ratio is None else row.ratio >= target


SATURATED_CPU = 90.0
console = Console()
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 160  # piped: do not squeeze the table to 80 columns


class ScenarioError(Exception):
    """A scenario cannot give a meaningful number (wrong answers, errors, a dead server)."""


class Unsupported(Exception):
    """The server does not (yet) support what the scenario measures."""


# --------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (a server and its workers)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return sorted(members)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _proc_kib_field(path: str, key: str) -> int | None:
    """A ``Key:   N kB`` line of a /proc file, in bytes (None once the process is gone)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_bytes(pid: int) -> int | None:
    """VmRSS of a process, from /proc/<pid>/status."""
    return _proc_kib_field(f"/proc/{pid}/status", "VmRSS:")


def pss_bytes(pid: int) -> int | None:
    """Proportional set size (shared pages split between the processes sharing them)."""
    return _proc_kib_field(f"/proc/{pid}/smaps_rollup", "Pss:")


def process_memory(pids: list[int]) -> list[dict[str, Any]]:
    """RSS and PSS of each process of a server; a process with children among them is a
    master, one without is a worker (or the server itself, if it is alone)."""
    parents = {pid: int(fields[1]) for pid in pids if (fields := _stat_fields(pid))}
    found = []
    for pid in pids:
        has_children = any(parent == pid for parent in parents.values())
        role = "master" if has_children else ("worker" if len(pids) > 1 else "server")
        found.append(
            {
                "pid": pid,
                "role": role,
                "rss_mib": (rss_bytes(pid) or 0) / MIB,
                "pss_mib": (pss_bytes(pid) or 0) / MIB,
                "cmdline": cmdline(pid)[:120],
            }
        )
    return found


def cmdline(pid: int) -> str:
    """A process's command line, for labels."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


class Children:
    """Every process this run starts, each in its own session (so Ctrl-C reaches only this
    process, which then stops them all, workers included)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self, cmd: list[str], *, cpu: int | None = None, **popen: Any
    ) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            cmd, cwd=ROOT, start_new_session=True, **popen
        )
        self.procs.append(proc)
        if cpu is not None:
            # Right after the fork, long before the interpreter has started any thread (threads
            # and forked workers inherit the mask).
            os.sched_setaffinity(proc.pid, {cpu})
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
        """Terminate a process and everything in its group; kill what does not exit."""
        members = group_members(proc.pid) if proc.poll() is None else []
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Workers the leader left behind: only those seen in its group while it was alive.
        for pid in members:
            fields = _stat_fields(pid)
            if pid != proc.pid and fields and int(fields[2]) == proc.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc, timeout=5.0)


@dataclass
class Server:
    """A running HTTP server this run started."""

    label: str
    proc: subprocess.Popen[bytes]
    base: str
    log: Path
    ready_seconds: float

    def pids(self) -> list[int]:
        return group_members(self.proc.pid) or [self.proc.pid]


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_server(
    children: Children,
    label: str,
    cmd: Callable[[int], list[str]],
    env: dict[str, str],
    log: Path,
    cpu: int | None,
) -> Server:
    """Spawn ``cmd(port)`` and wait for ``/readyz`` 200; ``ready_seconds`` is spawn to ready."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as log_file:
        started = time.perf_counter()
        proc = children.spawn(
            cmd(port), cpu=cpu, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    deadline = started + READY_TIMEOUT
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{base}/readyz").status_code == 200:
                    return Server(label, proc, base, log, time.perf_counter() - started)
            if proc.poll() is not None:
                children.stop(proc)
                text = log_tail(log)
                for line in text.splitlines():
                    if "No such option" in line:
                        raise Unsupported(f"{label}: {line.strip(' │|')}")
                raise ScenarioError(f"{label} exited with {proc.returncode}:\n{text}")
            time.sleep(0.02)
    children.stop(proc)
    raise ScenarioError(f"{label} not ready after {READY_TIMEOUT:.0f} s:\n{log_tail(log)}")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any MODELSERVE_* setting of the caller's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    return env | extra


# --------------------------------------------------------------------------------------------
# Deployments and models


@dataclass
class Deployment:
    """A data dir and database holding the demo model, with an admin API key."""

    name: str
    data_dir: Path
    database_url: str
    key: str

    def env(self, **settings: str) -> dict[str, str]:
        base = {"MODELSERVE_DATA_DIR": str(self.data_dir)}
        base["MODELSERVE_DATABASE_URL"] = self.database_url
        return clean_env(**base, **{f"MODELSERVE_{k.upper()}": v for k, v in settings.items()})

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


def prepare_deployment(tmp: Path, name: str, database_url: str | None = None) -> Deployment:
    """``modelserve demo --no-serve`` on a fresh data dir: migrations, the iris model as
    production, and an admin key in ``<data_dir>/demo-api-key``."""
    data_dir = tmp / name
    data_dir.mkdir(parents=True)
    url = database_url or f"sqlite:///{data_dir / 'modelserve.db'}"
    env = clean_env(MODELSERVE_DATA_DIR=str(data_dir), MODELSERVE_DATABASE_URL=url)
    done = subprocess.run(
        [sys.executable, "-m", "modelserve", "demo", "--no-serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")[-3000:]
        raise ScenarioError(f"modelserve demo --no-serve failed:\n{output}")
    key = (data_dir / "demo-api-key").read_text().strip()
    return Deployment(name, data_dir, url, key)


@dataclass
class Case:
    """A registered model, the same estimator here, and rows to send it."""

    name: str
    estimator: Any
    features: list[str]
    rows: np.ndarray[Any, Any]
    frame: bool
    """The estimator takes a DataFrame (fitted on one) rather than a matrix."""

    @property
    def classes(self) -> list[Any]:
        return list(self.estimator.classes_)

    def model_input(self, idx: list[int]) -> Any:
        if self.frame:
            return pd.DataFrame(self.rows[idx], columns=self.features)
        return self.rows[idx]

    def instances(self, idx: list[int]) -> list[dict[str, float]]:
        return [dict(zip(self.features, self.rows[i].tolist(), strict=True)) for i in idx]

    def body(self, idx: list[int], form: str = "instances") -> bytes:
        if form == "columnar":
            data = {"columns": self.features, "data": self.rows[idx].tolist()}
            return orjson.dumps(data)
        return orjson.dumps({"instances": self.instances(idx)})

    def expected(self, idx: list[int]) -> tuple[list[Any], np.ndarray[Any, Any]]:
        x = self.model_input(idx)
        return list(self.estimator.predict(x)), np.asarray(self.estimator.predict_proba(x))


def iris_rows() -> np.ndarray[Any, Any]:
    from sklearn.datasets import load_iris

    return np.asarray(load_iris().data, dtype=float)


def train_hgb(iterations: int = 300) -> tuple[Any, list[str], np.ndarray[Any, Any]]:
    """A HistGradientBoosting classifier on scikit-learn's bundled breast cancer data.

    300 boosting iterations by default: about 2.5 ms per ``predict_proba`` call on the benchmark
    machine, nearly all of it per call (64 rows take 3.4 ms), which is the case adaptive batching
    is for. At 100 iterations (1 ms a call) the server's own per-request work (HTTP, auth,
    validation, logging: about 1.7 ms) is the larger part and batching gains less
    (``--hgb-iterations 100``)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier

    data = load_breast_cancer()
    x = np.asarray(data.data, dtype=float)
    features = [str(n).replace(" ", "_") for n in data.feature_names]
    estimator = HistGradientBoostingClassifier(max_iter=iterations, random_state=0)
    estimator.fit(x, data.target)
    return estimator, features, x


def register_direct(database_url: str, name: str, estimator: Any, features: list[str]) -> None:
    """Register the estimator (skops, an all-number schema) through the registry's Python API,
    before any server starts on the database."""
    import skops.io

    import modelserve.models  # noqa: F401  # every table, for the foreign keys
    from modelserve.core.db import Database
    from modelserve.registry.schemas import RegistrationMetadata
    from modelserve.registry.service import RegistryService

    schema = {"features": [{"name": f, "type": "number"} for f in features]}
    meta = RegistrationMetadata.model_validate({"name": name, "input_schema": schema})
    db = Database(database_url, pool_size=1)
    try:
        with db.transaction() as session:
            RegistryService(session).register(skops.io.dumps(estimator), meta)
    finally:
        db.dispose()


def register_model(client: httpx.Client, name: str, estimator: Any, features: list[str]) -> None:
    """POST /v1/models: the estimator as skops with an all-number schema."""
    import skops.io

    schema = {"features": [{"name": f, "type": "number"} for f in features]}
    metadata = orjson.dumps({"name": name, "input_schema": schema}).decode()
    response = client.post(
        "/v1/models",
        files={"file": (f"{name}.skops", skops.io.dumps(estimator), "application/octet-stream")},
        data={"metadata": metadata},
    )
    if response.status_code != 201:
        raise ScenarioError(f"registering {name}: {response.status_code} {response.text[:500]}")


# --------------------------------------------------------------------------------------------
# Answers and load


def compare(
    case: Case, idx: list[int], labels: list[Any] | None, probs: list[Any], tol: float, what: str
) -> None:
    """Raise ScenarioError unless the answers match the local estimator's."""
    want_labels, want_proba = case.expected(idx)
    if len(probs) != len(idx) or (labels is not None and len(labels) != len(idx)):
        raise ScenarioError(f"{what}: {len(probs)} answers for {len(idx)} rows")
    for n, row in enumerate(idx):
        if labels is not None and str(labels[n]) != str(want_labels[n]):
            raise ScenarioError(
                f"{what}: wrong label for row {row}: {labels[n]!r}, expected {want_labels[n]!r}"
            )
        got = probs[n]
        if isinstance(got, dict):
            got = [got.get(str(c), float("nan")) for c in case.classes]
        diff = np.abs(np.asarray(got, dtype=float) - want_proba[n])
        if not np.all(diff <= tol):
            raise ScenarioError(
                f"{what}: probabilities for row {row} are {got}, expected "
                f"{want_proba[n].tolist()} (max difference {np.nanmax(diff):.3g} > {tol:g})"
            )


def verify_modelserve(
    client: httpx.Client,
    path: str,
    case: Case,
    batches: list[list[int]],
    *,
    form: str = "instances",
    tol: float = TOLERANCE,
    what: str,
) -> None:
    """Send each batch and compare with local predictions. Unsupported on a 422 for the
    columnar form (the server does not know it yet)."""
    for idx in batches:
        response = client.post(
            path, content=case.body(idx, form), headers={"content-type": "application/json"}
        )
        if response.status_code == 422 and form == "columnar":
            raise Unsupported(f"columnar form answered 422: {response.text[:200]}")
        if response.status_code != 200:
            raise ScenarioError(f"{what}: {response.status_code} {response.text[:500]}")
        body = response.json()
        compare(case, idx, body.get("predictions"), body.get("probabilities") or [], tol, what)


def verify_floor(client: httpx.Client, case: Case, rows: list[int]) -> None:
    for row in rows:
        response = client.post("/predict", json=case.rows[row].tolist())
        if response.status_code != 200:
            raise ScenarioError(f"floor: {response.status_code} {response.text[:300]}")
        compare(case, [row], None, [response.json()], TOLERANCE, "floor")


@dataclass
class Row:
    """One line of the results table."""

    group: str
    scenario: str
    status: str = "ok"
    """ok, unsupported, failed or skipped."""
    rps: float | None = None
    rows_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    ratio: float | None = None
    ratio_to: str = ""
    p99_ratio: float | None = None
    target: str = ""
    met: bool | None = None
    server_cpu: float | None = None
    """The server's CPU use over the run, as a share of one core."""
    load_cpu: float | None = None
    per_cpu_second: float | None = None
    """Requests per second of server CPU: steadier than req/s when other work shares the CPU."""
    cpu_ratio: float | None = None
    """Rows per server CPU-second, as a ratio to the baseline's."""
    note: str = ""
    load: dict[str, Any] | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rows_per_cpu_s(self) -> float | None:
        if self.per_cpu_second is None or self.rps is None or self.rows_per_s is None:
            return None
        return self.per_cpu_second * self.rows_per_s / self.rps


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


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def describe(row: Row) -> str:
    if row.status in ("unsupported", "failed", "skipped"):
        return f"{row.scenario}: [yellow]{row.status}[/] {row.note}"
    text = (
        f"{row.scenario}: {fmt(row.rps, 1)} req/s, {fmt(row.rows_per_s, 0)} rows/s, "
        f"p50 {fmt(row.p50_ms, 2)} ms, p99 {fmt(row.p99_ms, 2)} ms"
    )
    if row.ratio is not None:
        text += f", {ratio_text(row)}"
    if row.note:
        text += f" ({row.note})"
    return text


def fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def ratio_text(row: Row) -> str:
    if row.ratio is None:
        return "—"
    text = f"{row.ratio:.2f}x {row.ratio_to}"
    if row.p99_ratio is not None:
        text += f", p99 {row.p99_ratio:.2f}x"
    if row.cpu_ratio is not None:
        text += f", per CPU-s {row.cpu_ratio:.2f}x"
    return text


def spread(n: int, count: int, seed: int) -> list[int]:
    """``count`` row indices out of ``n``, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.integers(0, n, count)]


def single_bodies(case: Case) -> list[bytes]:
    return [case.body([i]) for i in spread(len(case.rows), 64, seed=1)]


def batches(case: Case, count: int = 8) -> list[list[int]]:
    return [spread(len(case.rows), BATCH_ROWS, seed=100 + k) for k in range(count)]


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


# --------------------------------------------------------------------------------------------
# Scenario groups

V1_PREDICT = "/v1/models/{}/predict"


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


def floor_bodies(case: Case) -> list[bytes]:
    return [orjson.dumps(case.rows[i].tolist()) for i in spread(len(case.rows), 64, seed=1)]


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


def put_serving(client: httpx.Client, model: str, settings: dict[str, Any]) -> None:
    """Set a model's serving settings; ScenarioError if refused."""
    response = client.put(f"/v1/models/{model}/serving", json=settings)
    if response.status_code == 422:
        raise Unsupported(f"PUT serving {settings}: 422 {response.text[:300]}")
    if response.status_code != 200:
        raise ScenarioError(f"PUT serving {settings}: {response.status_code} {response.text}")
    time.sleep(0.3)  # other processes follow within REGISTRY_POLL_SECONDS


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

        def after(label: str) -> None:
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
                        after=partial(after, label),
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


GROUP_FUNCS: dict[str, Callable[[Bench], None]] = {
    "startup": group_startup,
    "floor": group_floor,
    "batch": group_batch,
    "onnx": group_onnx,
    "batching": group_batching,
    "logging": group_logging,
    "workers": group_workers,
}


# --------------------------------------------------------------------------------------------
# Report


def results_table(rows: list[Row]) -> Table:
    table = Table(title="modelserve throughput", show_lines=False)
    for name in ("scenario", "req/s", "rows/s", "p50 ms", "p99 ms", "ratio", "target", "met?"):
        table.add_column(
            name, justify="left" if name in ("scenario", "ratio", "target") else "right"
        )
    table.add_column("CPU % srv/gen", justify="right")
    table.add_column("req/CPU-s", justify="right")
    for row in rows:
        if row.status in ("unsupported", "failed", "skipped"):
            colour = "yellow" if row.status == "unsupported" else "red"
            table.add_row(row.scenario, f"[{colour}]{row.status}[/]", *[""] * 8)
            continue
        met = "" if row.met is None else ("[green]yes[/]" if row.met else "[red]no[/]")
        cpu = f"{fmt(row.server_cpu, 0)}/{fmt(row.load_cpu, 0)}" if row.load_cpu else ""
        table.add_row(
            row.scenario + (" [red](errors)[/]" if row.status == "errors" else ""),
            fmt(row.rps, 1),
            fmt(row.rows_per_s, 0),
            fmt(row.p50_ms, 2),
            fmt(row.p99_ms, 2),
            ratio_text(row) if row.ratio is not None else "",
            row.target,
            met,
            cpu,
            fmt(row.per_cpu_second, 0),
        )
    return table


def startup_table(entries: list[dict[str, Any]]) -> Table:
    table = Table(title="start-up and memory")
    table.add_column("server")
    table.add_column("spawn → /readyz 200 s", justify="right")
    table.add_column("RSS MiB", justify="right")
    table.add_column("RSS vs floor", justify="right")
    table.add_column("target")
    table.add_column("met?")
    floor = next((e for e in entries if e["server"] == "floor"), None)
    for entry in entries:
        vs = ""
        if floor and entry is not floor:
            vs = f"{entry['rss_mib'] / floor['rss_mib']:.2f}x"
        met = {True: "yes", False: "[red]no[/]"}.get(entry["met"], "") if "met" in entry else ""
        table.add_row(
            entry["server"],
            f"{entry['ready_s']:.2f}",
            f"{entry['rss_mib']:.0f}",
            vs,
            entry.get("target", ""),
            met,
        )
        for process in entry.get("processes", []):
            name = f"{process['role']} {process['pid']} (PSS {process['pss_mib']:.0f} MiB)"
            table.add_row(f"  [dim]{name}[/]", "", f"[dim]{process['rss_mib']:.0f}[/]", "")
    return table


def machine() -> dict[str, Any]:
    import sklearn

    def version(module: str) -> str | None:
        try:
            return str(__import__(module).__version__)
        except (ImportError, AttributeError):
            return None

    commit = (
        subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, check=False
        )
        .stdout.decode()
        .strip()
    )
    return {
        "cpus": os.cpu_count(),
        "pinned": MULTI_CPU,
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit or None,
        "versions": {
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "fastapi": version("fastapi"),
            "uvicorn": version("uvicorn"),
            "onnxruntime": version("onnxruntime"),
        },
    }


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


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="Seconds timed per scenario (10)."
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="Seconds of load before timing (min(2, duration/3)).",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=GROUPS,
        metavar="GROUP",
        help=f"Run only these groups: {', '.join(GROUPS)}.",
    )
    parser.add_argument("--connections", type=int, default=16, help="Concurrent connections (16).")
    parser.add_argument(
        "--hgb-iterations",
        type=int,
        default=300,
        help="Boosting iterations of the batching group's model (300).",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="Timed runs per scenario (1); a group's scenarios take turns and report medians.",
    )
    parser.add_argument(
        "--batching-connections",
        type=int,
        default=64,
        help="Concurrent connections in the batching group (64).",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="Load generator client (raw; see bench/load.py).",
    )
    parser.add_argument(
        "--startup-runs", type=int, default=3, help="Server starts timed per server (3)."
    )
    parser.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="A PostgreSQL database to connect to, to create and drop the benchmark's own "
        "(postgresql://postgres@127.0.0.1:5432/test).",
    )
    parser.add_argument(
        "--keep-temp", action="store_true", help="Keep the temp dir (server logs, data dirs)."
    )
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(2.0, args.duration / 3)
    return args


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    if LOAD_CPU is not None:
        os.sched_setaffinity(0, {LOAD_CPU})  # keep this process off the server's CPU
    else:
        console.print("[yellow]one CPU only: nothing is pinned; numbers mean little[/]")
    started = datetime.now(UTC)
    info = machine()
    if info["load_average"][0] > 0.5:
        console.print(
            f"[yellow]load average {info['load_average'][0]:.2f}: something else is running, "
            "numbers will be noisy[/]"
        )
    bench = Bench(args, Path(tempfile.mkdtemp(prefix="modelserve-bench-")))
    status = "complete"
    try:
        for name in GROUPS:
            if args.only and name not in args.only:
                continue
            console.rule(f"[bold]{name}[/]: {GROUP_FUNCS[name].__doc__}")
            try:
                GROUP_FUNCS[name](bench)
            except (ScenarioError, Unsupported) as exc:
                kind = "unsupported" if isinstance(exc, Unsupported) else "failed"
                bench.record(Row(name, f"{name} (group)", status=kind, note=str(exc)))
            except KeyboardInterrupt:
                raise
            except Exception:
                console.print(f"[red]{name} crashed:[/]\n{traceback.format_exc()}")
                bench.record(Row(name, f"{name} (group)", status="failed", note="crashed"))
    except KeyboardInterrupt:
        status = "interrupted"
        console.print("[yellow]interrupted: stopping servers[/]")
    finally:
        bench.children.stop_all()
        for database in list(bench.pg_databases):
            drop_pg(bench, database)
        if args.keep_temp:
            console.print(f"temp dir kept: {bench.tmp}")
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    if bench.rows:
        console.print(results_table(bench.rows))
    if bench.startup:
        console.print(startup_table(bench.startup))
    for row in bench.rows:
        if row.status != "ok" and row.note:
            bench.notes.append(f"{row.scenario}: {row.status}: {row.note}")
        elif row.note:
            bench.notes.append(f"{row.scenario}: {row.note}")
    for note in bench.notes:
        console.print(f"- {note}", highlight=False)
    path = write_results(bench, started, info, status)
    console.print(f"results written to {path.relative_to(ROOT)}")
    return 130 if status == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(main())
