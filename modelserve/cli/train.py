"""``modelserve train``: CSV -> schema -> pipeline -> cross-validation -> registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, cast

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelserve.cli.common import out, transaction
from modelserve.cli.models import move_alias, print_version
from modelserve.training.pipeline import Algorithm, TrainedModel
from modelserve.training.service import TrainingJob, fit, register_trained

ALGORITHMS = ("linear", "logistic", "random_forest", "gradient_boosting")


def run_training(job: TrainingJob) -> TrainedModel:
    """Fit with a progress bar over the cross-validation folds, then print the metrics."""
    with Progress(
        TextColumn("cross-validating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out(),
        transient=True,
    ) as progress:
        task = progress.add_task("folds", total=job.folds)

        def on_fold(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        trained = fit(job, on_fold=on_fold)
    print_metrics(trained)
    return trained


def print_metrics(trained: TrainedModel) -> None:
    """Cross-validated metrics as a table, and the columns that were ignored."""
    table = Table("metric", "mean", "std", title=f"{trained.metrics.get('cv_folds')}-fold CV")
    for key, value in trained.metrics.items():
        if isinstance(value, dict) and "mean" in value:
            table.add_row(key, f"{value['mean']:.4f}", f"{value['std']:.4f}")
    out().print(table)
    for column, reason in trained.ignored_columns.items():
        out().print(f"[yellow]ignored column {column!r}[/]: {reason}")


def train(
    data: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Training CSV.")],
    target: Annotated[str, typer.Option(help="Column to predict.")],
    name: Annotated[str, typer.Option(help="Model name to register under.")],
    algorithm: Annotated[
        str, typer.Option(help="linear|logistic|random_forest|gradient_boosting")
    ] = "gradient_boosting",
    task: Annotated[str | None, typer.Option(help="classification|regression (inferred).")] = None,
    alias: Annotated[str | None, typer.Option(help="Point this alias at the new version.")] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="Cross-validation folds.")] = 5,
    description: Annotated[str, typer.Option(help="What this version is.")] = "",
) -> None:
    """Train a model from a CSV and register it as a new version."""
    if algorithm not in ALGORITHMS:
        raise typer.BadParameter(f"choose one of {', '.join(ALGORITHMS)}", param_hint="--algorithm")
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
    )
    trained = run_training(job)
    with transaction() as session:
        version = register_trained(session, job, trained)
    out().print("[green]registered[/]")
    print_version(version)
    if alias:
        move_alias(name, alias, version.version)
