"""Writing and reading the prediction log; knows nothing of HTTP."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from modelserve.core.db import Database
from modelserve.core.errors import ModelUnavailable, NotFound
from modelserve.core.pagination import decode_cursor, encode_cursor
from modelserve.predictions.encoding import encode
from modelserve.predictions.inputs import spelled_out
from modelserve.predictions.repository import PredictionRepository
from modelserve.predictions.schemas import PredictionPublic, PredictionRecord, PredictionsPage
from modelserve.predictions.writer import LogWriter
from modelserve.registry.repository import RegistryRepository


class PredictionLog:
    """Hands every record to the process's LogWriter, off the request path; a failed request is
    logged too. Without a writer (the CLI, which never serves predictions) it writes each record
    in its own transaction."""

    def __init__(
        self, db: Database, writer: LogWriter | None = None, *, enabled: bool = True
    ) -> None:
        self.db = db
        self.writer = writer
        self.enabled = enabled
        """False only for the benchmark's "logging off" baseline (setting prediction_log)."""

    def write(self, record: PredictionRecord) -> None:
        """Queue one record (or spill it to the local file when the queue is full); raises
        ModelUnavailable only when it can be kept nowhere, so no prediction is served
        unlogged."""
        if not self.enabled:
            return
        try:
            if self.writer is not None:
                self.writer.put(record)
                return
            with self.db.transaction() as session:  # escaped if orjson refuses it
                PredictionRepository(session).insert_many([encode(record)[0]])
        except (SQLAlchemyError, OSError) as exc:
            raise ModelUnavailable(
                "The prediction could not be logged; nothing was served.",
                details={"error": type(exc).__name__},
            ) from exc


class PredictionQueryService:
    """Reads the log within one session."""

    def __init__(self, session: Session) -> None:
        self.repo = PredictionRepository(session)
        self.registry = RegistryRepository(session)

    def list(
        self, *, model: str | None, limit: int, cursor: str | None, user_id: int | None = None
    ) -> PredictionsPage:
        """A newest-first page, optionally for one model and one user's requests."""
        model_id = None
        if model is not None:
            found = self.registry.get_model(model)
            if found is None:
                raise NotFound(f"Model {model!r} not found.")
            model_id = found.id
        before = decode_cursor(cursor) if cursor else None
        rows = self.repo.page(model_id=model_id, user_id=user_id, limit=limit + 1, before=before)
        data = [
            PredictionPublic(
                id=p.id,
                request_id=p.request_id,
                model=name,
                version=number,
                user_id=p.user_id,
                caller=p.caller,
                protocol=p.protocol,
                variant=p.variant,
                shadow=p.variant == "shadow",
                status=p.status,
                http_status=p.http_status,
                latency_ms=p.latency_ms,
                n_rows=p.n_rows,
                runtime=p.runtime,
                inputs=spelled_out(p.inputs, p.inputs_encoding),
                outputs=p.outputs,
                error=p.error,
                created_at=p.created_at,
            )
            for p, name, number in rows[:limit]
        ]
        next_cursor = None
        if len(rows) > limit:
            last = data[-1]
            next_cursor = encode_cursor(last.created_at, last.id)
        return PredictionsPage(data=data, next_cursor=next_cursor)
