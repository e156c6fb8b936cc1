"""Prediction request and response bodies (v1)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class InstancesRequest(BaseModel):
    """Records: ``{"instances": [{feature: value, ...}, ...]}``, one object per row, every
    feature of the version's schema in each."""

    model_config = ConfigDict(extra="forbid", title="Instances")

    instances: list[dict[str, Any]] = Field(
        min_length=1, examples=[[{"sepal_length": 5.1, "sepal_width": 3.5}]]
    )


class ColumnarRequest(BaseModel):
    """Columnar: ``{"columns": [feature, ...], "data": [[value, ...], ...]}``. ``columns`` names
    every feature of the version's schema exactly once, in any order; each row of ``data`` has
    one value per column, in that order. Validated a column at a time, so large batches are
    cheaper to send this way."""

    model_config = ConfigDict(extra="forbid", title="Columnar")

    columns: list[str] = Field(
        min_length=1, examples=[["sepal_length", "sepal_width", "petal_length", "petal_width"]]
    )
    data: list[list[Any]] = Field(min_length=1, examples=[[[5.1, 3.5, 1.4, 0.2]]])


PredictRequest = InstancesRequest | ColumnarRequest
"""Either form; both are validated against the version's schema, with the same rules."""


def predict_request_schema() -> dict[str, Any]:
    """The OpenAPI schema of a predict body: one of the two forms (inlined)."""
    return {
        "title": "PredictRequest",
        "description": "Rows to predict, as records or as columns; validated against the "
        "version's input schema.",
        "oneOf": [InstancesRequest.model_json_schema(), ColumnarRequest.model_json_schema()],
    }


class InputWarning(BaseModel):
    """A value that was served though the training data never went that far."""

    row: int = Field(description="The instance's index in the request (from 0).")
    feature: str
    type: str = Field(description="``outside_training_range``.")
    message: str


class PredictResponse(BaseModel):
    """What a model answered."""

    model: str
    version: int
    request_id: uuid.UUID
    predictions: list[Any]
    runtime: Literal["sklearn", "onnx"] = Field(
        description="What answered: scikit-learn (or the model's own library: XGBoost, LightGBM, "
        "ONNX Runtime for an ONNX file), or onnx: ONNX Runtime running the version's verified "
        "twin (see the model's serving settings)."
    )
    probabilities: list[dict[str, float]] | None = Field(
        default=None, description="Classifiers only: one {label: probability} per instance."
    )
    warnings: list[InputWarning] | None = Field(
        default=None,
        description="Present when some value lies outside the range seen in training: one per "
        "such value (the first 1000), by row. The prediction is still made.",
    )
