"""Prediction-log schemas."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

PredictionStatus = Literal["ok", "invalid", "error"]


@dataclass(frozen=True)
class PredictionRecord:
    """One prediction request to log, success or failure."""

    request_id: uuid.UUID
    model_id: int
    model_version_id: int
    user_id: int | None
    api_key_id: int | None
    caller: str | None
    protocol: str
    status: PredictionStatus
    http_status: int
    latency_ms: float
    n_rows: int
    inputs: Any
    outputs: Any
    error: Any
    created_at: datetime
    variant: str = "primary"
    runtime: str | None = None
    """The runtime that ran the model (sklearn or onnx); None when it did not run."""
    inputs_encoding: str | None = None
    """How ``inputs`` is spelled: None for JSON as the request carried it, else see
    ``predictions.inputs``."""


class PredictionPublic(BaseModel):
    """A logged prediction."""

    id: int
    request_id: uuid.UUID
    model: str
    version: int
    user_id: int | None = Field(description="Null once the user is deleted.")
    caller: str | None = Field(description="Username (and key prefix) at the time.")
    protocol: str
    variant: Literal["primary", "canary", "shadow"] = Field(
        description="primary; canary when a traffic policy chose another version; shadow for a "
        "copy of a request run on a shadow version (never answered)."
    )
    shadow: bool = Field(description="Whether this was a shadow run.")
    status: PredictionStatus
    http_status: int
    latency_ms: float
    n_rows: int
    runtime: str | None = Field(
        description="The runtime that ran the model: sklearn or onnx (the verified ONNX twin); "
        "null when the model did not run (the request was refused first)."
    )
    inputs: Any
    outputs: Any
    error: Any
    created_at: datetime


class PredictionsPage(BaseModel):
    """A newest-first page of the log."""

    data: list[PredictionPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at end.")
