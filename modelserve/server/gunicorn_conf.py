"""Gunicorn configuration, for running modelserve under Gunicorn's own command::

    gunicorn -c python:modelserve.server.gunicorn_conf

The same settings ``modelserve serve --workers N`` uses (``workers.gunicorn_options``: Uvicorn
workers, timeouts, graceful shutdown, max-requests with jitter, no access log, app built in each
worker), from ``MODELSERVE_*`` variables: bind from ``MODELSERVE_HOST`` and ``MODELSERVE_PORT``,
the worker count from ``MODELSERVE_WORKERS`` (a number or ``auto``; unset: ``auto``, one per
CPU available). Gunicorn's command-line flags and ``GUNICORN_CMD_ARGS`` override them as usual
(``-b 0.0.0.0:8000 -w 4``).

Gunicorn executes this module in its master at start; the package never imports it, so reading
the environment here breaks no rule. Pending migrations are applied in the master before any
worker starts (``on_starting``); each worker then builds its app with ``create_app()``, which
reads the same variables.
"""

from __future__ import annotations

from typing import Any

import modelserve.app  # noqa: F401  # imported, not built: workers fork with modules loaded
from modelserve.config import Settings
from modelserve.server.workers import gunicorn_options, migrate_database, worker_count

_settings = Settings()

globals().update(gunicorn_options(_settings, worker_count(_settings.workers, default="auto")))

wsgi_app = "modelserve.app:create_app()"


def on_starting(server: Any) -> None:
    """Apply pending migrations once, in the master, before the workers start."""
    migrate_database(_settings)
