"""Alembic, driven from code: the migrations ship inside the package."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from modelserve.core.db import make_engine

MIGRATION_LOCK = 0x6D6F64656C737276
"""The PostgreSQL advisory lock key ("modelsrv") held while migrations are checked and applied."""


@dataclass(frozen=True)
class Applied:
    """Migrations this call applied: from ``before`` (None: an empty database) to ``after``."""

    before: str | None
    after: str | None


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and ``url``."""
    config = Config()
    config.set_main_option("script_location", "modelserve:migrations")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    return config


@contextmanager
def advisory_lock(url: str, key: int = MIGRATION_LOCK) -> Iterator[None]:
    """Hold a PostgreSQL session advisory lock on ``key`` for the block (waiting for it), so
    replicas starting together take turns; a no-op on SQLite (one file: its own locking)."""
    if make_url(url).get_backend_name() != "postgresql":
        yield
        return
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> Applied | None:
    """Apply migrations up to ``revision``; what was applied, or None if it was there already.

    On PostgreSQL the check and the upgrade happen under an advisory lock: of several
    processes starting at once on an empty database, one applies the migrations while the
    others wait, then find nothing to do.
    """
    with advisory_lock(url):
        engine = make_engine(url, pool_size=1)
        try:
            before = current_revision(engine)
            command.upgrade(alembic_config(url), revision)
            after = current_revision(engine)
        finally:
            engine.dispose()
    return None if before == after else Applied(before, after)


def downgrade(url: str, revision: str = "base") -> None:
    """Revert migrations down to ``revision``."""
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    """The newest revision the package ships."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when unmigrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_at_head(engine: Engine) -> bool:
    """Whether the database schema is at the package's newest revision."""
    return current_revision(engine) == head_revision()
