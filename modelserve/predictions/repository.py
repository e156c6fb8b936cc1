"""Prediction-log queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime

from sqlalchemy import Row, insert, select, tuple_
from sqlalchemy.orm import Session

from modelserve.predictions.models import Prediction
from modelserve.predictions.schemas import PredictionRecord
from modelserve.registry.models import Model, ModelVersion


class PredictionRepository:
    """Reads and writes the log within the caller's session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def insert_many(self, records: Sequence[PredictionRecord]) -> None:
        """Insert records in one multi-row statement."""
        if records:
            self.session.execute(insert(Prediction), [asdict(r) for r in records])

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
