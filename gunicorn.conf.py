"""Gunicorn reads ``./gunicorn.conf.py`` when it is given no ``-c``: in a checkout, plain
``gunicorn`` serves modelserve with the packaged configuration, ``modelserve/server/
gunicorn_conf.py`` (Uvicorn workers, timeouts, graceful shutdown, max-requests with jitter,
the worker count from ``MODELSERVE_WORKERS`` or one per CPU). ``modelserve serve --workers N``
applies the same options without reading this file."""

from modelserve.server.gunicorn_conf import *  # noqa: F403
from modelserve.server.gunicorn_conf import on_starting, wsgi_app

__all__ = ["on_starting", "wsgi_app"]
