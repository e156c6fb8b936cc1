"""Prediction log table."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from modelserve.core.clock import utcnow
from modelserve.core.db import Base, UTCDateTime, WrittenJSONType

BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class Prediction(Base):
    """One logged prediction request."""

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_model_created", "model_id", "created_at", "id"),
        Index("ix_predictions_created", "created_at", "id"),
        UniqueConstraint("request_id", "variant"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    request_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    api_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), nullable=True
    )
    caller: Mapped[str | None] = mapped_column(String(100), nullable=True)
    protocol: Mapped[str] = mapped_column(String(16), default="v1")
    variant: Mapped[str] = mapped_column(String(16), default="primary", server_default="primary")
    """primary, canary (a traffic policy sent the request to another version) or shadow (a
    copy of the request, never answered)."""
    status: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    n_rows: Mapped[int] = mapped_column(Integer, default=0)
    runtime: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """sklearn or onnx: what ran the model; null when it did not run."""
    inputs: Mapped[Any] = mapped_column(WrittenJSONType, nullable=True)
    inputs_encoding: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """Null: ``inputs`` is the JSON the request carried; ``float64``: see predictions.inputs."""
    outputs: Mapped[Any] = mapped_column(WrittenJSONType, nullable=True)
    error: Mapped[Any] = mapped_column(WrittenJSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
