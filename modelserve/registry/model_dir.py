"""The model-directory mode: serve the model a directory holds, with no registry set-up.

KServe's storage initializer lays a model out in ``/mnt/models``; modelserve reads one artifact
named ``model.<ext>`` (any format it registers: skops, joblib, pickle) and its input schema in
``schema.json``. At start it is registered into the configured database (or the embedded SQLite
default) through the same safe loading and probe as any registration, once per distinct
artifact, and the ``production`` alias is pointed at it; from then on it is served like any
registered model, on v1 and V2, with the same validation, log and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
from pydantic import ValidationError
from sqlalchemy import select

from modelserve.core.db import Database
from modelserve.core.errors import AppError
from modelserve.registry.models import Model, ModelVersion
from modelserve.registry.schemas import (
    DEFAULT_RUNTIME,
    InputSchema,
    RegistrationMetadata,
    Runtime,
)
from modelserve.registry.service import (
    EXTENSION_FORMATS,
    RegistryService,
    sha256_hex,
)

DEFAULT_MODEL_NAME = "model"
SCHEMA_FILE = "schema.json"


class ModelDirError(AppError):
    """The model directory does not hold what the mode needs; the message says what."""

    code = "invalid_model_dir"


@dataclass(frozen=True)
class ModelDir:
    """What a model directory holds: the artifact and its schema, read and checked."""

    artifact: Path
    data: bytes
    schema: InputSchema

    @classmethod
    def read(cls, directory: Path) -> ModelDir:
        """Read ``directory``; a clear refusal if it lacks one ``model.<ext>`` or the schema."""
        if not directory.is_dir():
            raise ModelDirError(f"Model directory {directory} does not exist.")
        found = sorted(
            p for p in directory.glob("model.*") if p.suffix.lower() in EXTENSION_FORMATS
        )
        if len(found) != 1:
            kinds = ", ".join(f"model{ext}" for ext in EXTENSION_FORMATS)
            seen = ", ".join(p.name for p in found) or "none"
            raise ModelDirError(f"{directory} must hold exactly one of {kinds} (found: {seen}).")
        return cls(found[0], found[0].read_bytes(), _read_schema(directory / SCHEMA_FILE))


def _read_schema(path: Path) -> InputSchema:
    try:
        raw = orjson.loads(path.read_bytes())
        if isinstance(raw, dict) and "input_schema" in raw:
            raw = raw["input_schema"]
        return InputSchema.model_validate(raw)
    except OSError as exc:
        raise ModelDirError(f"Cannot read {path}: {exc.strerror}.") from None
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise ModelDirError(f"{path} is not an input schema.", details=str(exc)) from None


def register_model_dir(
    db: Database, directory: Path, name: str | None, default_runtime: Runtime = DEFAULT_RUNTIME
) -> tuple[str, int]:
    """Register the directory's model under ``name`` (unless this very artifact already is a
    version of it) and return (name, version number) for the caller to alias; a new model
    starts with ``default_runtime``."""
    found = ModelDir.read(directory)
    name = name or DEFAULT_MODEL_NAME
    digest = sha256_hex(found.data)
    with db.transaction() as session:
        existing = session.scalar(
            select(ModelVersion.number)
            .join(Model, Model.id == ModelVersion.model_id)
            .where(Model.name == name, ModelVersion.sha256 == digest)
            .order_by(ModelVersion.number.desc())
        )
        if existing is not None:
            return name, existing
        meta = RegistrationMetadata(
            name=name, input_schema=found.schema, description=f"model directory {directory}"
        )
        version = RegistryService(session).register(
            found.data, meta, filename=found.artifact.name, default_runtime=default_runtime
        )
    return name, version.version
