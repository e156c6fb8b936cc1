"""Database plumbing: declarative base, portable column types, engine and sessions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, DateTime, Dialect, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")
"""Real JSON: JSONB on PostgreSQL, JSON (text) on SQLite."""

WrittenJSONType = JSON()
"""JSON kept as it was written: ``json`` on PostgreSQL (checked, stored as text: no conversion to
jsonb's binary form, whose numbers are ``numeric``s, on every insert), JSON (text) on SQLite. For
the prediction log, written far more often than it is queried inside the database."""


def utc_bound(value: datetime, *, naive: bool) -> datetime:
    """``value`` in UTC as a ``UTCDateTime`` column binds it (without its zone when ``naive``:
    SQLite); ValueError for a naive datetime, whose zone is unknown."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given for a UTC timestamp column")
    value = value.astimezone(UTC)
    return value.replace(tzinfo=None) if naive else value


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; store UTC (naive on SQLite, which has no zone)."""
        if value is None:
            return None
        return utc_bound(value, naive=dialect.name == "sqlite")

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base of every ORM model; constraint names follow ``NAMING_CONVENTION``."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


SQLITE_PAGE_BYTES = 16384
"""Page size of a new SQLite database (an existing one keeps its own). The prediction log's
100-row records (25 KB) span overflow pages, each written to the WAL and checkpointed on its
own: with 16 KB pages a record cost the writer 84 -> 52 us of CPU, one-row records 9-10 us
either way (4 KB is SQLite's default)."""


def _sqlite_pragmas(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
    # WAL lets several server processes read while one writes; foreign keys are off by default.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_BYTES}")  # before WAL, or it is ignored
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


MAX_ID = 2_147_483_647
"""Largest id an INTEGER column holds on every supported database; larger ids are refused."""


def _json_loads(value: Any) -> Any:
    # SQLite gives JSON columns numeric affinity: a stored top-level number comes back as one.
    return value if isinstance(value, int | float) else orjson.loads(value)


def json_text(value: Any) -> str:
    """A JSON column's value as the engine's JSON serialiser writes it (None: JSON null)."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Create an engine suited to ``url``'s database."""
    json_options: dict[str, Any] = {
        "json_serializer": json_text,
        "json_deserializer": _json_loads,
    }
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}, **json_options
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, **json_options
    )


class Database:
    """An engine and its session factory; one per process, opened by the app's lifespan."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session committed when the block succeeds and rolled back when it raises."""
        with self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
