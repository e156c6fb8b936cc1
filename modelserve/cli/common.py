"""What every command shares: settings, the database, the console, error rendering."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from modelserve.config import Settings
from modelserve.core import migrate
from modelserve.core.db import Database
from modelserve.core.errors import AppError, NotFound
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
    """Settings from the environment, with command-line overrides that were given. An invalid
    value is one line per problem on stderr, naming the option or variable, and exit status 2
    (as for any usage error), not a traceback."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        for problem in exc.errors():
            err().print(
                f"[bold red]error[/]: {_problem(problem, given)}", highlight=False, soft_wrap=True
            )
        raise typer.Exit(2) from None


def _problem(problem: Any, given: dict[str, Any]) -> str:
    """One line for a settings error: the option or variable, its value unless it may be a
    secret, and what is wrong. A whole-configuration error shows no value at all (its input is
    every setting, secrets included)."""
    message = str(problem["msg"]).removeprefix("Value error, ")
    if not problem["loc"]:
        return f"invalid configuration: {message}"
    name = str(problem["loc"][0])
    source = f"--{name.replace('_', '-')}" if name in given else f"MODELSERVE_{name.upper()}"
    shown = "" if _is_secret(name) else f" {problem['input']!r}"
    return f"invalid {source}{shown}: {message}"


def _is_secret(name: str) -> bool:
    """Whether a setting's value may be a secret, so a refusal must not echo it."""
    return any(word in name for word in ("secret", "url", "password", "key"))


def masked_url(url: str) -> str:
    """A database URL with its password (if any) masked."""
    return make_url(url).render_as_string(hide_password=True)


def database_exists(url: str) -> bool:
    """Whether ``url`` names a database modelserve has already set up (without creating one:
    a missing SQLite file is not opened)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path == ":memory:" or not Path(path).exists():
            return False
    db = Database(url, pool_size=1)
    try:
        return migrate.current_revision(db.engine) is not None
    finally:
        db.dispose()


def open_database(settings: Settings, *, create: bool = True) -> Database:
    """A migrated database for ``settings`` (pending migrations are applied). A new one is
    created and said so on stderr; with ``create`` false (read-only commands) a missing one
    is an error instead."""
    url = settings.resolved_database_url
    existed = database_exists(url)
    if not existed and not create:
        raise NotFound(
            f"No modelserve database at {masked_url(url)}; nothing has been created here. Run "
            "from the directory you set up (the data dir is ./.modelserve by default), or set "
            "MODELSERVE_DATA_DIR or MODELSERVE_DATABASE_URL."
        )
    settings.ensure_data_dir()
    applied = migrate.upgrade(url)
    if not existed:
        err().print(f"created a new database {_where(url)}", highlight=False, soft_wrap=True)
    if applied is not None:
        err().print(f"applied migrations {applied.before or 'base'} -> {applied.after}")
    return Database(url, pool_size=2)


def _where(url: str) -> str:
    """Where a new database is, for a message: a SQLite file's URL; only the kind of a server's
    (its URL may come from a secret file, and names hosts and users)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"at {masked_url(url)}"
    return f"on the configured {parsed.get_backend_name()} server"


@contextmanager
def transaction(settings: Settings | None = None, *, create: bool = True) -> Iterator[Session]:
    """One committed transaction on the configured database (``create``: see
    ``open_database``)."""
    db = open_database(settings or load_settings(), create=create)
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
