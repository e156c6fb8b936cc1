"""The Gunicorn worker class: Uvicorn's event loop in each worker process."""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker as _UvicornWorker

from modelserve.config import Settings
from modelserve.server.protocol import protocol_class


class UvicornWorker(_UvicornWorker):  # type: ignore[misc]  # uvicorn-worker has no type hints
    """The maintained ``uvicorn-worker`` worker (``uvicorn.workers`` is deprecated), with
    Uvicorn's access log off and modelserve's HTTP protocol (header timeout, enveloped protocol
    errors), as ``modelserve serve`` runs Uvicorn with one worker.

    Gunicorn's ``accesslog = None`` alone only drops the lines: Uvicorn would still format a
    record per request. Every prediction is in the prediction log anyway."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {**_UvicornWorker.CONFIG_KWARGS, "access_log": False}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # ``modelserve serve`` hands its settings over (GunicornServer); under plain
        # ``gunicorn -c python:modelserve.server.gunicorn_conf`` they come from the environment.
        settings = getattr(self.app, "settings", None)
        if not isinstance(settings, Settings):
            settings = Settings()
        self.config.http = protocol_class(settings.header_timeout_seconds)
