"""Registry schemas: the input-schema contract, output descriptions and public views."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelserve.core.db import MAX_ID

Label = str | int | float | bool


class FeatureType(StrEnum):
    """What a feature's values are."""

    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    CATEGORY = "category"


class FeatureSpec(BaseModel):
    """One input feature: its name, type and the values it admits."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    type: FeatureType
    nullable: bool = Field(default=False, description="Whether null (a missing value) is allowed.")
    minimum: float | None = Field(default=None, description="Smallest allowed value (numeric).")
    maximum: float | None = Field(default=None, description="Largest allowed value (numeric).")
    categories: list[str] | None = Field(
        default=None, description="Allowed values; required for, and only for, categories."
    )
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        numeric = self.type in (FeatureType.NUMBER, FeatureType.INTEGER)
        if self.type is FeatureType.CATEGORY:
            if not self.categories:
                raise ValueError(f"category feature {self.name!r} needs a non-empty 'categories'")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError(f"category feature {self.name!r} has duplicate categories")
        elif self.categories is not None:
            raise ValueError(f"only category features take 'categories' ({self.name!r})")
        if not numeric and (self.minimum is not None or self.maximum is not None):
            raise ValueError(f"only numeric features take minimum/maximum ({self.name!r})")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"feature {self.name!r} has minimum > maximum")
        return self


class InputSchema(BaseModel):
    """The ordered features a model version accepts: the contract for every request."""

    model_config = ConfigDict(extra="forbid")

    features: list[FeatureSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> InputSchema:
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate feature names: {duplicates}")
        return self

    @property
    def names(self) -> list[str]:
        """Feature names in order."""
        return [f.name for f in self.features]


class OutputSpec(BaseModel):
    """What a version predicts."""

    task: Literal["classification", "regression"]
    classes: list[Label] | None = Field(
        default=None, description="Class labels, in the model's order (classification)."
    )
    probabilities: bool = Field(default=False, description="Whether it returns probabilities.")


class OnnxTwinPublic(BaseModel):
    """A version's verified ONNX twin."""

    max_abs_diff: float = Field(
        description="Largest difference from scikit-learn's probabilities (or regression values) "
        "on the verification sample; labels were identical."
    )
    size_bytes: int
    sha256: str


class VersionPublic(BaseModel):
    """A model version as the API shows it."""

    model: str
    version: int
    format: str
    sha256: str
    size_bytes: int
    input_schema: InputSchema
    output: OutputSpec
    metrics: dict[str, Any]
    environment: dict[str, Any]
    sklearn_version_mismatch: bool = Field(
        description="Trained with another scikit-learn version than this server runs."
    )
    description: str
    aliases: list[str]
    created_at: datetime
    onnx: OnnxTwinPublic | None = Field(
        default=None,
        description="The ONNX twin, served when the model's runtime is onnx; null: none (the "
        "version always runs on scikit-learn).",
    )
    onnx_unavailable_reason: str | None = Field(
        default=None,
        description="In the registration response only (not stored): why no ONNX twin was kept.",
    )
    input_schema_source: str | None = Field(
        default=None,
        description="In the registration response only: set when the schema was built from the "
        "model file's feature names rather than given.",
    )


class BatchingSettings(BaseModel):
    """Adaptive batching: concurrent requests for one version merged into one model call."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(ge=2, le=10_000, description="Most rows in one model call.")
    max_wait_ms: float = Field(
        gt=0, le=1000, description="Longest a request waits for others to join its batch."
    )


Runtime = Literal["sklearn", "onnx"]


class ServingSettings(BaseModel):
    """How a model's versions are run."""

    model_config = ConfigDict(extra="forbid")

    runtime: Runtime = Field(
        default="sklearn",
        description="onnx: versions with a verified ONNX twin run on ONNX Runtime (others stay "
        "on scikit-learn).",
    )
    batching: BatchingSettings | None = Field(default=None, description="Null: batching off.")


class ModelPublic(BaseModel):
    """A model as the API shows it."""

    name: str
    created_at: datetime
    serving: ServingSettings = Field(default_factory=ServingSettings)
    latest_version: int | None
    aliases: dict[str, int] = Field(description="Alias name -> version number.")
    versions: list[VersionPublic] = Field(default_factory=list)


class ModelsPublic(BaseModel):
    """A list of models."""

    data: list[ModelPublic]
    count: int


class AliasUpdate(BaseModel):
    """Point an alias at a version."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: int = Field(ge=1, le=MAX_ID)


class AliasPublic(BaseModel):
    """Where an alias points."""

    model: str
    alias: str
    version: int
    previous_version: int | None


class RegistrationMetadata(BaseModel):
    """What accompanies an artifact at registration."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    input_schema: InputSchema | None = Field(
        default=None,
        description="Omitted: built from the feature names the model file carries (numeric).",
    )
    format: Literal["skops", "joblib", "pickle", "xgboost", "lightgbm", "onnx"] | None = Field(
        default=None, description="Detected from the file's name or bytes when omitted."
    )
    description: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, str] = Field(
        default_factory=dict, description="Library versions it was trained with, if known."
    )
    alias: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
