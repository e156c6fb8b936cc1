"""What every command shares: settings, the database, the console, error rendering."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from rich.console import Console
from sqlalchemy.orm import Session

from modelserve.config import Settings
from modelserve.core import migrate
from modelserve.core.db import Database
from modelserve.core.errors import AppError
from modelserve.inference.cache import ModelCache
from modelserve.inference.service import InferenceService
from modelserve.lifecycle.service import LifecycleService, LifecycleSettings
from modelserve.predictions.service import PredictionLog

PIPED_WIDTH = 160


def out() -> Console:
    """A console on the current stdout, sized from the current environment (wide when piped,
    so tables are not cut to 80 columns)."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console


def err() -> Console:
    """A console on the current stderr."""
    return Console(stderr=True)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with command-line overrides that were given."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def open_database(settings: Settings) -> Database:
    """A migrated database for ``settings`` (pending migrations are applied)."""
    settings.ensure_data_dir()
    applied = migrate.upgrade(settings.resolved_database_url)
    if applied is not None:
        err().print(f"applied migrations {applied.before or 'base'} -> {applied.after}")
    return Database(settings.resolved_database_url, pool_size=2)


@contextmanager
def transaction(settings: Settings | None = None) -> Iterator[Session]:
    """One committed transaction on the configured database."""
    db = open_database(settings or load_settings())
    try:
        with db.transaction() as session:
            yield session
    finally:
        db.dispose()


@contextmanager
def lifecycle(settings: Settings | None = None) -> Iterator[LifecycleService]:
    """Alias moves and traffic changes from the command line: the version is loaded and probed
    here first, then in every live server process, before anything moves."""
    settings = settings or load_settings()
    db = open_database(settings)
    inference = InferenceService(db, ModelCache(4), PredictionLog(db), settings)
    try:
        yield LifecycleService(db, inference.warm, LifecycleSettings.of(settings))
    finally:
        db.dispose()


def render_error(exc: AppError) -> None:
    """Print an application error for a person."""
    err().print(f"[bold red]error[/] ({exc.code}): {exc.message}")
    if exc.details:
        err().print(orjson.dumps(exc.details, option=orjson.OPT_INDENT_2).decode())
