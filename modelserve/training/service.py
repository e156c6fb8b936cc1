"""Train from a CSV and register the result: shared by ``modelserve train`` and the demo."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
from sqlalchemy.orm import Session

from modelserve.core.errors import ValidationFailed
from modelserve.registry.environment import current_environment
from modelserve.registry.loaders import dump_skops
from modelserve.registry.schemas import RegistrationMetadata, VersionPublic
from modelserve.registry.service import RegistryService
from modelserve.training.pipeline import Algorithm, TrainedModel, train


@dataclass(frozen=True)
class TrainingJob:
    """What to train and how to register it."""

    data: Path
    target: str
    name: str
    algorithm: Algorithm = "gradient_boosting"
    task: Literal["classification", "regression"] | None = None
    alias: str | None = None
    folds: int = 5
    description: str = ""


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV, turning I/O and parse failures into ValidationFailed."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ValidationFailed(f"Cannot read {path} as CSV.", details=str(exc)) from exc
    if frame.empty:
        raise ValidationFailed(f"{path} has no rows.")
    return frame


def fit(job: TrainingJob, on_fold: Callable[[int, int], None] | None = None) -> TrainedModel:
    """Infer the schema, cross-validate and fit (no database involved)."""
    return train(
        read_csv(job.data),
        job.target,
        algorithm=job.algorithm,
        task=job.task,
        folds=job.folds,
        on_fold=on_fold,
    )


def register_trained(session: Session, job: TrainingJob, trained: TrainedModel) -> VersionPublic:
    """Store a fitted model as a new version (skops), with its schema and metrics."""
    meta = RegistrationMetadata(
        name=job.name,
        input_schema=trained.input_schema,
        format="skops",
        description=job.description or f"{job.algorithm} trained on {job.data.name}",
        metrics=trained.metrics,
        alias=job.alias,
    )
    return RegistryService(session).register(
        dump_skops(trained.estimator), meta, environment=current_environment()
    )
