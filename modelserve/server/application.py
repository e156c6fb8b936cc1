"""Gunicorn driven from code (imported only when more than one worker is asked for)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from modelserve.config import Settings
from modelserve.server.workers import gunicorn_options


class GunicornServer(BaseApplication):  # type: ignore[misc]  # gunicorn has no type hints
    """A Gunicorn application serving ``create_app(settings)`` in every worker.

    Options come from ``gunicorn_options``, then from ``GUNICORN_CMD_ARGS`` (Gunicorn's own
    variable, same flags as its command line) for anything modelserve does not expose, e.g.
    ``GUNICORN_CMD_ARGS="--timeout 300 --keep-alive 75"``. No ``gunicorn.conf.py`` is read from
    the working directory."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.options = gunicorn_options(settings, workers)
        super().__init__(prog="modelserve serve")

    def load_config(self) -> None:
        """Set the options (an unknown name fails the start: Gunicorn reports it, exit 1)."""
        for name, value in self.options.items():
            self.cfg.set(name, value)
        from_env = self.cfg.parser().parse_args(self.cfg.get_cmd_args_from_env())
        for name, value in vars(from_env).items():
            if value is not None and name != "args":
                self.cfg.set(name.lower(), value)

    def load(self) -> Any:
        """The app, built in each worker after the fork (``preload_app`` is off)."""
        from modelserve.app import create_app

        return create_app(self.settings)
