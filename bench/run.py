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
import os
import shutil
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from groups_floor import group_batch, group_floor, group_startup
from groups_modes import drop_pg, group_batching, group_logging, group_onnx, group_workers
from harness import LOAD_CPU, ROOT, ScenarioError, Unsupported, console
from report import Row, machine, results_table, startup_table
from runner import Bench, write_results

GROUPS = ("startup", "floor", "batch", "onnx", "batching", "logging", "workers")

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
