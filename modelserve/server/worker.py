"""The Gunicorn worker class: Uvicorn's event loop in each worker process."""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker as _UvicornWorker


class UvicornWorker(_UvicornWorker):  # type: ignore[misc]  # uvicorn-worker has no type hints
    """The maintained ``uvicorn-worker`` worker (``uvicorn.workers`` is deprecated), with
    Uvicorn's access log off, as ``modelserve serve`` runs Uvicorn with one worker.

    Gunicorn's ``accesslog = None`` alone only drops the lines: Uvicorn would still format a
    record per request. Every prediction is in the prediction log anyway."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {**_UvicornWorker.CONFIG_KWARGS, "access_log": False}
