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


class FeatureProfile(BaseModel):
    """What training saw of one feature. Soft: a value outside ``[min, max]`` is served, with a
    warning naming the feature; only ``minimum``/``maximum``/``categories`` refuse values."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = Field(default=None, description="Smallest value seen (numeric).")
    max: float | None = Field(default=None, description="Largest value seen (numeric).")
    frequencies: dict[str, int] | None = Field(
        default=None,
        description="Rows per value (categories; 'true'/'false' for booleans).",
    )
    count: int = Field(default=0, ge=0, description="Rows with a value.")
    missing: int = Field(default=0, ge=0, description="Rows without one.")


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
    observed: FeatureProfile | None = Field(
        default=None,
        description="What training saw (inferred schemas): range and frequencies; values "
        "outside the range are served with a warning.",
    )

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
        seen = self.observed
        if seen is not None and not numeric and (seen.min is not None or seen.max is not None):
            raise ValueError(f"only numeric features keep an observed range ({self.name!r})")
        return self

    @property
    def soft_range(self) -> tuple[float, float] | None:
        """The observed training range values are compared with (numeric features only)."""
        seen = self.observed
        if seen is None or seen.min is None or seen.max is None:
            return None
        return seen.min, seen.max


class InputSchema(BaseModel):
    """The ordered features a model version accepts: the contract for every request."""

    model_config = ConfigDict(extra="forbid")

    features: list[FeatureSpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _book_format(cls, data: Any) -> Any:
        """Also read ``{"columns": [{"name", "type": "numeric"|"boolean"}]}`` (the book's
        ``input_schema.json``, unwrapped): numeric is a number."""
        if isinstance(data, dict) and "columns" in data and "features" not in data:
            columns = data["columns"]
            if not isinstance(columns, list):
                raise ValueError("'columns' must be a list of {name, type} objects")
            return {"features": [book_column(column) for column in columns]}
        return data

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


BOOK_TYPES = {"numeric": "number", "boolean": "boolean", "integer": "integer"}
"""The book's column types (and ours) -> feature types."""


def book_column(column: Any) -> Any:
    """One book-format column as a feature: ``type`` mapped, every other key kept (so a wrong
    one is refused by the feature model)."""
    if not isinstance(column, dict):
        return column
    kind = column.get("type")
    mapped = BOOK_TYPES.get(kind, kind) if isinstance(kind, str) else kind
    return {**column, "type": mapped}


def parse_schema_document(raw: Any) -> InputSchema:
    """An input schema from a schema file: ours (``{"features": [...]}``), the book's
    (``{"columns": [...]}``), either wrapped in ``{"input_schema": ...}``. Raises pydantic's
    ValidationError."""
    if isinstance(raw, dict) and "input_schema" in raw and len(raw) == 1:
        raw = raw["input_schema"]
    return InputSchema.model_validate(raw)


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
DEFAULT_RUNTIME: Runtime = "onnx"
"""The runtime a newly registered model starts with unless the server's settings say otherwise."""


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
    runtime: Runtime | None = Field(
        default=None,
        description="For a new model, the runtime it starts with (omitted: the server's "
        "DEFAULT_RUNTIME, onnx unless configured); an existing model keeps its own (change it "
        "with PUT /v1/models/{name}/serving).",
    )
