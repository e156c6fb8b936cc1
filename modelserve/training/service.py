"""Train from a CSV and register the result: shared by ``modelserve train`` and the demo."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import pandas as pd
from sqlalchemy.orm import Session

from modelserve.core.errors import ValidationFailed
from modelserve.registry.environment import current_environment
from modelserve.registry.loaders import dump_skops
from modelserve.registry.schemas import (
    DEFAULT_RUNTIME,
    RegistrationMetadata,
    Runtime,
    VersionPublic,
)
from modelserve.registry.service import RegistryService
from modelserve.training.estimators import DEFAULT_ALGORITHM, Algorithm, ParamValue
from modelserve.training.pipeline import TrainedModel, train


@dataclass(frozen=True)
class TrainingJob:
    """What to train and how to register it."""

    data: Path
    target: str
    name: str
    algorithm: Algorithm = DEFAULT_ALGORITHM
    task: Literal["classification", "regression"] | None = None
    alias: str | None = None
    folds: int = 5
    description: str = ""
    features: list[str] | None = None
    drop: list[str] = field(default_factory=list)
    params: dict[str, ParamValue] = field(default_factory=dict)
    search: int = 0
    schema: Path | None = None
    """A schema file whose constraints are merged into the inferred schema."""


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV, turning I/O and parse failures into ValidationFailed."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ValidationFailed(f"Cannot read {path} as CSV.", details=str(exc)) from exc
    if frame.empty:
        raise ValidationFailed(f"{path} has no rows.")
    return frame


def read_schema_file(path: Path) -> Any:
    """A schema file's JSON, I/O and parse failures as ValidationFailed."""
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ValidationFailed(f"Cannot read schema file {path}.", details=str(exc)) from exc


def fit(
    job: TrainingJob,
    on_fold: Callable[[int, int], None] | None = None,
    on_candidate: Callable[[int, int], None] | None = None,
) -> TrainedModel:
    """Select columns, infer the schema (merged with the job's schema file), cross-validate
    (or search) and fit (no database involved)."""
    return train(
        read_csv(job.data),
        job.target,
        algorithm=job.algorithm,
        task=job.task,
        folds=job.folds,
        features=job.features,
        drop=job.drop,
        params=job.params,
        search=job.search,
        overrides=None if job.schema is None else read_schema_file(job.schema),
        on_fold=on_fold,
        on_candidate=on_candidate,
    )


def register_trained(
    session: Session,
    job: TrainingJob,
    trained: TrainedModel,
    default_runtime: Runtime = DEFAULT_RUNTIME,
) -> VersionPublic:
    """Store a fitted model as a new version (skops), with its schema and metrics; a new model
    starts with ``default_runtime``."""
    meta = RegistrationMetadata(
        name=job.name,
        input_schema=trained.input_schema,
        format="skops",
        description=job.description or f"{job.algorithm} trained on {job.data.name}",
        metrics=trained.metrics,
        alias=job.alias,
    )
    return RegistryService(session).register(
        dump_skops(trained.estimator),
        meta,
        environment=current_environment(),
        default_runtime=default_runtime,
    )
