"""Results: a row of the results table, its one-line description, the tables printed at the
end, and what is recorded about the machine."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from harness import MULTI_CPU, ROOT
from rich.table import Table


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


def at_least(target: float) -> Callable[[Row], bool | None]:
    """A judge: the row's throughput ratio to its baseline is at least ``target``."""
    return lambda row: None if row.ratio is None else row.ratio >= target


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


# --------------------------------------------------------------------------------------------
# Tables


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
