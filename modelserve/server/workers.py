"""How many server processes, and Gunicorn run from code when there is more than one.

With one worker ``modelserve serve`` runs Uvicorn in its own process. With more, its process
becomes the Gunicorn master (the arbiter): it binds the socket, forks the Uvicorn workers,
replaces any that exits or stops heartbeating, recycles each after ``max_requests`` and, on
SIGTERM, stops accepting connections and lets every worker finish its requests and its lifespan
shutdown. The master is the process a supervisor started (no wrapper in between), so the
supervisor's signals reach it directly. SIGINT and SIGQUIT stop quickly instead.
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal

from modelserve.config import Settings
from modelserve.core import migrate

WorkerSetting = int | Literal["auto"] | None

WORKER_CLASS = "modelserve.server.worker.UvicornWorker"

HEARTBEAT_TIMEOUT_SECONDS = 120
"""A worker silent this long is killed and replaced. Uvicorn heartbeats from its event loop, which
never runs model code (that is on threads), so only a hung worker goes silent; but a booting
worker heartbeats only once its lifespan has loaded and probed every version behind an alias,
hence far more than Gunicorn's 30 s."""

SHUTDOWN_SECONDS = 20
"""On SIGTERM, what a worker gets beyond ``LOG_FLUSH_TIMEOUT_SECONDS`` to finish its in-flight
requests and stop its registry watcher before Gunicorn kills it."""

MAX_REQUESTS = 1_000_000
MAX_REQUESTS_JITTER = 100_000
"""Each worker is replaced after 1,000,000 to 1,100,000 requests, which bounds slow memory growth
(fragmentation, leaks in native libraries). The jitter keeps workers, which take their requests
at about the same rate, from all restarting at once. The bound is high because a new worker
loads and probes its models before it serves: at thousands of requests per second per worker,
Gunicorn's usual 1,000s would restart workers every few seconds."""


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask (``taskset``, cpusets) where the platform
    has one, else every CPU. CPU quotas (cgroup ``cpu.max``) are not visible here: under one, set
    the worker count explicitly."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def worker_count(setting: WorkerSetting, *, default: int | Literal["auto"] = 1) -> int:
    """The number of worker processes ``setting`` asks for (``default`` when unset).

    ``auto`` is one per available CPU, not Gunicorn's usual ``2 x cores + 1``: that formula is
    for synchronous workers that spend most of their time waiting. A Uvicorn worker already
    overlaps waiting on its event loop, and predictions are CPU-bound, so more processes than
    cores would only contend for the CPUs and hold more copies of every loaded model.
    """
    value = default if setting is None else setting
    return value if isinstance(value, int) else available_cpus()


def bind_address(host: str, port: int) -> str:
    """``host:port`` as Gunicorn binds it (IPv6 addresses in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gunicorn_options(settings: Settings, workers: int) -> dict[str, Any]:
    """The Gunicorn settings for ``modelserve serve --workers N`` and ``gunicorn_conf``."""
    return {
        "bind": [bind_address(settings.host, settings.port)],
        "workers": workers,
        "worker_class": WORKER_CLASS,
        # Off: each worker builds its app after the fork, and its lifespan opens the engine and
        # pool, the model cache and the threads (registry watcher, log writer, inference), so no
        # connection, lock or thread is ever shared across a fork. Each worker loads its models
        # once; preloading them in the master would not save memory for long anyway (reference
        # counting writes to every page an object sits on, so copy-on-write pages get copied).
        "preload_app": False,
        "timeout": HEARTBEAT_TIMEOUT_SECONDS,
        # In-flight requests first, then the lifespan shutdown writes the queued prediction log.
        "graceful_timeout": SHUTDOWN_SECONDS + math.ceil(settings.log_flush_timeout_seconds),
        # Idle keep-alive connections are closed after this long (MODELSERVE_KEEPALIVE_SECONDS,
        # as with one worker). Behind a load balancer, set it above the balancer's idle
        # timeout, or the balancer may reuse a connection just closed.
        "keepalive": settings.keepalive_seconds,
        "max_requests": MAX_REQUESTS,
        "max_requests_jitter": MAX_REQUESTS_JITTER,
        "accesslog": None,
        # Gunicorn 25.1+ opens a control socket by default, at one path per user, so two servers
        # on a host would fight over it; it is also a management interface nobody asked for.
        "control_socket_disable": True,
        "proc_name": "modelserve",
    }


def migrate_database(settings: Settings) -> None:
    """Apply pending migrations (in the master, once, before any worker starts)."""
    settings.ensure_data_dir()
    migrate.upgrade(settings.resolved_database_url)


def run_gunicorn(settings: Settings, workers: int) -> None:
    """Become the Gunicorn master for ``workers`` Uvicorn workers and serve until stopped.

    Returns only by ``SystemExit``: status 0 after a SIGTERM or SIGINT shutdown."""
    from modelserve.server.application import GunicornServer

    GunicornServer(settings, workers).run()
