"""Storing prediction-log records in the database, one failing record never holding back (or
stopping) the others."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from modelserve.core.db import Database
from modelserve.predictions.encoding import escaped
from modelserve.predictions.repository import PredictionRepository
from modelserve.predictions.schemas import PredictionRecord
from modelserve.predictions.spill import SpillStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogStats:
    """A snapshot of the writer's counters (since the process started)."""

    queue_depth: int
    queue_capacity: int
    written: int
    copied: int
    """Of ``written``, records written with COPY (PostgreSQL)."""
    spilled: int
    spill_pending: int
    replayed: int
    adopted: int
    rejected: int
    escaped: int
    """Records stored in their escaped form (see encoding.loggable)."""
    failed_batches: int
    batches: int
    batch_seconds: float
    journal_pending: int
    """Records in this process's journal, not yet committed nor spilled."""
    writer_alive: bool
    writer_restarts: int


def refused(exc: Exception) -> bool:
    """Whether the records themselves failed (a constraint or data error, a value that cannot be
    bound or encoded), rather than the database being unavailable."""
    if not isinstance(exc, SQLAlchemyError):
        return True  # not the database's doing: something in a record
    if isinstance(exc, IntegrityError | DataError):
        return True
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


class RecordStore:
    """Writes records in one transaction; on a refusal, record by record, then a refused record
    in its escaped form, and only then sets it aside (``SpillStore.reject``)."""

    def __init__(self, db: Database, spill: SpillStore) -> None:
        self.db = db
        self.spill = spill
        self.copy = db.engine.dialect.name == "postgresql"
        self.copied = self.escaped = 0

    def store_new(self, records: Sequence[PredictionRecord]) -> int:
        """``store`` for records fresh from the queue: on PostgreSQL with COPY (a third of the
        CPU per row), falling back to the INSERT when any is refused or already stored."""
        if self.copy:
            try:
                with self.db.transaction() as session:
                    PredictionRepository(session).copy_new(records)
            except Exception as exc:
                if not refused(exc):
                    raise
            else:
                self.copied += len(records)
                return len(records)
        return self.store(records)

    def store(self, records: Sequence[PredictionRecord]) -> int:
        """Insert records in one transaction, skipping rows already stored. Returns how many
        were stored; raises SQLAlchemyError only when the database is unavailable."""
        return self._store(records, escaping=False)

    def _store(self, records: Sequence[PredictionRecord], *, escaping: bool) -> int:
        try:
            with self.db.transaction() as session:
                PredictionRepository(session).insert_ignoring_duplicates(records)
        except Exception as exc:
            if not refused(exc):
                raise
            if len(records) > 1:
                return sum(self._store([record], escaping=escaping) for record in records)
            if not escaping:
                stored = self._store([escaped(records[0])], escaping=True)
                self.escaped += stored
                return stored
            self._reject(records, exc)
            return 0
        return len(records)

    def _reject(self, records: Sequence[PredictionRecord], exc: Exception) -> None:
        reason = _reason(exc)
        try:
            self.spill.reject(records, reason)
        except OSError:
            logger.critical(
                "prediction log: record %s refused by the database (%s) and not kept",
                records[0].request_id,
                reason,
            )
