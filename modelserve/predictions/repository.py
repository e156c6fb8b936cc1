"""Prediction-log queries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any, cast

import psycopg
from sqlalchemy import Row, Table, insert, select, tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from modelserve.core.db import json_text, utc_bound
from modelserve.predictions.models import Prediction
from modelserve.predictions.schemas import PredictionRecord
from modelserve.registry.models import Model, ModelVersion

_FIELDS = tuple(f.name for f in fields(PredictionRecord))


_JSON_FIELDS = {"inputs", "outputs", "error"}
_COPY = f"COPY predictions ({', '.join(_FIELDS)}) FROM STDIN"
_PLACEHOLDERS = ", ".join("?" * len(_FIELDS))
_SQLITE_INSERT = (  # the columns are PredictionRecord's field names
    f"INSERT INTO predictions ({', '.join(_FIELDS)}) VALUES ({_PLACEHOLDERS}) "  # noqa: S608
    "ON CONFLICT (request_id, variant) DO NOTHING"
)


def _sqlite_time(value: datetime) -> str:
    """What ``UTCDateTime`` and SQLite's DATETIME bind: naive UTC, always with microseconds."""
    return utc_bound(value, naive=True).isoformat(" ", "microseconds")


_Binds = dict[str, Callable[[Any], Any]]
_COPY_BINDS: _Binds = dict.fromkeys(_JSON_FIELDS, json_text)
"""How COPY takes a record's values: psycopg adapts all but the JSON columns' text."""
_SQLITE_BINDS: _Binds = {
    "request_id": lambda value: value.hex,  # Uuid() on SQLite: CHAR(32) of hex digits
    "created_at": _sqlite_time,
    **_COPY_BINDS,
}
"""The values the ORM's types bind on SQLite (checked column for column by a test)."""


def _bound_row(record: PredictionRecord, binds: _Binds) -> tuple[Any, ...]:
    """The record's column values in ``_FIELDS`` order, each through its bind if it has one:
    without SQLAlchemy's per-row processing, two thirds of the log writer's Python work per
    record on SQLite."""
    values = record.__dict__
    return tuple(
        values[name] if (bind := binds.get(name)) is None else bind(values[name])
        for name in _FIELDS
    )


def _row(record: PredictionRecord) -> dict[str, Any]:
    # A shallow dict: dataclasses.asdict would deep-copy every request's inputs and outputs.
    return {name: getattr(record, name) for name in _FIELDS}


class PredictionRepository:
    """Reads and writes the log within the caller's session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def insert_many(self, records: Sequence[PredictionRecord]) -> None:
        """Insert records in one multi-row statement."""
        if records:
            self.session.execute(insert(Prediction), [_row(r) for r in records])

    def insert_ignoring_duplicates(self, records: Sequence[PredictionRecord]) -> None:
        """Insert records in one multi-row statement, skipping any already stored (same request
        id and variant), so replaying a batch that may have been written is harmless."""
        if not records:
            return
        if self.session.get_bind().dialect.name == "sqlite":
            rows = [_bound_row(record, _SQLITE_BINDS) for record in records]
            self.session.connection().exec_driver_sql(_SQLITE_INSERT, rows)
            return
        statement = postgresql.insert(cast(Table, Prediction.__table__))
        statement = statement.on_conflict_do_nothing(index_elements=["request_id", "variant"])
        self.session.execute(statement, [_row(r) for r in records])

    def copy_new(self, records: Sequence[PredictionRecord]) -> None:
        """PostgreSQL only: store records with COPY, a third of the CPU per row of the INSERT;
        IntegrityError when one is already stored (then use insert_ignoring_duplicates)."""
        if not records:
            return
        connection = self.session.connection()
        raw = cast("psycopg.Connection[Any]", connection.connection.driver_connection)
        try:
            with raw.cursor() as cursor, cursor.copy(_COPY) as copy:
                for record in records:
                    copy.write_row(_bound_row(record, _COPY_BINDS))
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) or raw.closed:
                connection.invalidate(exc)
            raise DBAPIError.instance(_COPY, None, exc, psycopg.Error) from exc

    def page(
        self,
        *,
        model_id: int | None,
        user_id: int | None,
        limit: int,
        before: tuple[datetime, int] | None,
    ) -> Sequence[Row[Prediction, str, int]]:
        """Up to ``limit`` rows older than ``before`` (created_at, id), newest first."""
        statement = (
            select(Prediction, Model.name, ModelVersion.number)
            .join(Model, Prediction.model_id == Model.id)
            .join(ModelVersion, Prediction.model_version_id == ModelVersion.id)
            .order_by(Prediction.created_at.desc(), Prediction.id.desc())
            .limit(limit)
        )
        if model_id is not None:
            statement = statement.where(Prediction.model_id == model_id)
        if user_id is not None:
            statement = statement.where(Prediction.user_id == user_id)
        if before is not None:
            statement = statement.where(tuple_(Prediction.created_at, Prediction.id) < before)
        return self.session.execute(statement).all()
