"""The benchmark's machinery: the child processes it starts, the servers among them (spawned,
waited for until ready, stopped with their workers), their CPU and memory use read from /proc,
and deployments (a data dir and database holding the demo model)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
MULTI_CPU = (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
SERVER_CPU = 0 if MULTI_CPU else None
LOAD_CPU = 1 if MULTI_CPU else None
READY_TIMEOUT = 120.0
MIB = 1024 * 1024


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
# Deployments


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
