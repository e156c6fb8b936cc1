"""Lifecycle schemas: traffic policies and version comparisons."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from modelserve.core.db import MAX_ID

ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class CanarySpec(BaseModel):
    """Send a share of an alias's callers to another version."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=MAX_ID)
    percent: float = Field(
        gt=0, le=100, description="Share of callers (sticky per caller) sent to this version."
    )


class ShadowSpec(BaseModel):
    """Also run another version on a copy of every request; its output is only logged."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=MAX_ID)


class TrafficUpdate(BaseModel):
    """A model's traffic policy for one alias; omit canary or shadow to turn it off."""

    model_config = ConfigDict(extra="forbid")

    alias: str = Field(default="production", min_length=1, max_length=64, pattern=ALIAS_PATTERN)
    canary: CanarySpec | None = None
    shadow: ShadowSpec | None = None


class TrafficPublic(BaseModel):
    """Where an alias's traffic goes."""

    model: str
    alias: str
    version: int | None = Field(description="The version the alias points at.")
    canary: CanarySpec | None
    shadow: ShadowSpec | None
    updated_at: datetime | None


class TrafficList(BaseModel):
    """Every traffic policy of a model."""

    data: list[TrafficPublic]


class ComparisonPublic(BaseModel):
    """How two versions' logged outputs differ on the same requests."""

    model: str
    a: int
    b: int
    requests: int = Field(description="Requests both versions answered (a shadow pairs them).")
    rows: int = Field(description="Rows compared.")
    agreement_rate: float | None = Field(description="Share of rows with the same prediction.")
    mean_abs_probability_diff: float | None = Field(
        description="Mean over rows and classes of |p_a - p_b| (classifiers)."
    )
    mean_abs_prediction_diff: float | None = Field(
        description="Mean |prediction_a - prediction_b| (regressors)."
    )
