"""``modelserve train``: CSV -> schema -> pipeline -> cross-validation (or search) -> registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, cast

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelserve.cli.common import load_settings, out, transaction
from modelserve.cli.models import metrics_summary, move_alias, print_version
from modelserve.training.estimators import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    Algorithm,
    available_algorithms,
    parse_params,
)
from modelserve.training.pipeline import TrainedModel
from modelserve.training.service import TrainingJob, fit, register_trained

SHOWN_CANDIDATES = 5
"""How many of a search's best candidates are printed."""


def run_training(job: TrainingJob) -> TrainedModel:
    """Fit with a progress bar over the folds (or the search's candidates), then print the
    metrics."""
    label = f"searching ({job.search} candidates)" if job.search else "cross-validating"
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out(),
        transient=True,
    ) as progress:
        task = progress.add_task("work", total=job.search or job.folds)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        trained = fit(job, on_fold=advance, on_candidate=advance)
    if trained.search:
        print_candidates(trained)
    print_metrics(trained)
    return trained


def print_candidates(trained: TrainedModel) -> None:
    """The search's best candidates: score (mean ± std over the folds) and parameters."""
    metric = trained.metrics["search"]["ranked_by"]
    shown = trained.search[:SHOWN_CANDIDATES]
    table = Table(
        "rank", metric, "std", "parameters", title=f"best {len(shown)} of {len(trained.search)}"
    )
    for rank, candidate in enumerate(shown, start=1):
        params = ", ".join(f"{k}={v}" for k, v in sorted(candidate.params.items()))
        table.add_row(str(rank), f"{candidate.score:.4f}", f"{candidate.std:.4f}", params)
    out().print(table)


def print_metrics(trained: TrainedModel) -> None:
    """Cross-validated metrics as a table, a one-line summary, and the columns ignored."""
    table = Table("metric", "mean", "std", title=f"{trained.metrics.get('cv_folds')}-fold CV")
    for key, value in trained.metrics.items():
        if isinstance(value, dict) and "mean" in value:
            table.add_row(key, f"{value['mean']:.4f}", f"{value['std']:.4f}")
    out().print(table)
    out().print(f"{trained.metrics['algorithm']}: {metrics_summary(trained.metrics)}")
    for column, reason in trained.ignored_columns.items():
        out().print(f"[yellow]ignored column {column!r}[/]: {reason}")


def _names(values: list[str] | None) -> list[str]:
    """Column names from repeated and comma-separated options."""
    return [name.strip() for value in values or [] for name in value.split(",") if name.strip()]


def train(
    data: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Training CSV.")],
    target: Annotated[str, typer.Option(help="Column to predict.")],
    name: Annotated[str, typer.Option(help="Model name to register under.")],
    algorithm: Annotated[
        str, typer.Option(help=f"One of {', '.join(ALGORITHMS)} (xgboost/lightgbm if installed).")
    ] = DEFAULT_ALGORITHM,
    task: Annotated[str | None, typer.Option(help="classification|regression (inferred).")] = None,
    features: Annotated[
        list[str] | None, typer.Option(help="Feature columns, comma-separated (default: all).")
    ] = None,
    drop: Annotated[
        list[str] | None, typer.Option(help="Columns to leave out, comma-separated.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Hyperparameter name=value (repeatable).")
    ] = None,
    search: Annotated[
        int, typer.Option(min=0, max=1000, help="Randomized search over N candidates.")
    ] = 0,
    schema: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="Schema file whose constraints are merged in."
        ),
    ] = None,
    alias: Annotated[str | None, typer.Option(help="Point this alias at the new version.")] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="Cross-validation folds.")] = 5,
    description: Annotated[str, typer.Option(help="What this version is.")] = "",
) -> None:
    """Train a model from a CSV and register it as a new version."""
    if algorithm not in ALGORITHMS:
        choices = ", ".join(available_algorithms())
        raise typer.BadParameter(f"choose one of {choices}", param_hint="--algorithm")
    if task not in (None, "classification", "regression"):
        raise typer.BadParameter("classification or regression", param_hint="--task")
    job = TrainingJob(
        data=data,
        target=target,
        name=name,
        algorithm=cast(Algorithm, algorithm),
        task=cast(Literal["classification", "regression"] | None, task),
        alias=alias,
        folds=folds,
        description=description,
        features=_names(features) or None,
        drop=_names(drop),
        params=parse_params(param or []),
        search=search,
        schema=schema,
    )
    trained = run_training(job)
    settings = load_settings()
    with transaction(settings) as session:
        version = register_trained(session, job, trained, settings.default_runtime)
    out().print("[green]registered[/]")
    print_version(version)
    if alias:
        move_alias(name, alias, version.version)
