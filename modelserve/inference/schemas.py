"""Prediction request and response bodies (v1)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, Field


class PredictRequest(BaseModel):
    """``{"instances": [{feature: value, ...}, ...]}``; validated against the version's schema."""

    instances: list[dict[str, Any]] = Field(
        min_length=1, examples=[[{"sepal_length": 5.1, "sepal_width": 3.5}]]
    )


class PredictResponse(BaseModel):
    """What a model answered."""

    model: str
    version: int
    request_id: uuid.UUID
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = Field(
        default=None, description="Classifiers only: one {label: probability} per instance."
    )
