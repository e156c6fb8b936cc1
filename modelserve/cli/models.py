"""``modelserve models``: list, show, register, alias, rollback, traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from pydantic import ValidationError
from rich.table import Table

from modelserve.cli.common import err, lifecycle, load_settings, out, transaction
from modelserve.core.errors import ValidationFailed
from modelserve.lifecycle.schemas import CanarySpec, ShadowSpec, TrafficUpdate
from modelserve.registry.environment import server_sklearn_version
from modelserve.registry.sandbox import SandboxLimits
from modelserve.registry.schemas import (
    AliasPublic,
    InputSchema,
    RegistrationMetadata,
    VersionPublic,
    parse_schema_document,
)
from modelserve.registry.service import DEFAULT_ALIAS, RegistryService

app = typer.Typer(help="The model registry.", no_args_is_help=True, rich_markup_mode=None)


SUMMARY_METRICS = ("roc_auc", "roc_auc_ovr", "accuracy", "balanced_accuracy", "r2", "mae", "rmse")
"""The cross-validated metrics a summary shows first (ROC AUC for classifiers; R², MAE for
regression), then any others, up to five."""


def metrics_summary(metrics: dict[str, Any]) -> str:
    """The headline cross-validated metrics as ``name=mean`` pairs."""
    means = {k: v["mean"] for k, v in metrics.items() if isinstance(v, dict) and "mean" in v}
    keys = [k for k in SUMMARY_METRICS if k in means] + [
        k for k in means if k not in SUMMARY_METRICS
    ]
    return ", ".join(f"{key}={means[key]:.3f}" for key in keys[:5])


def warn_if_mismatch(version: VersionPublic) -> None:
    """Flag a version trained with another scikit-learn than the server's."""
    if version.sklearn_version_mismatch:
        err().print(
            f"[bold yellow]warning[/]: {version.model} v{version.version} was trained with "
            f"scikit-learn {version.environment.get('scikit-learn')}, this server runs "
            f"{server_sklearn_version()}; predictions may differ."
        )


def print_version(version: VersionPublic) -> None:
    """Summarise a version."""
    out().print(
        f"[bold]{version.model}[/] v{version.version} ({version.format}, "
        f"{version.output.task}, sha256 {version.sha256[:12]}...)"
    )
    if version.aliases:
        out().print(f"aliases: {', '.join(version.aliases)}")
    if version.metrics:
        out().print(f"metrics: {metrics_summary(version.metrics)}")
    if version.onnx is not None:
        out().print(f"onnx twin: kept (max |diff| {version.onnx.max_abs_diff:.1e})")
    elif version.onnx_unavailable_reason:
        out().print(f"onnx twin: none ({version.onnx_unavailable_reason})", markup=False)
    warn_if_mismatch(version)


@app.command("list")
def list_models() -> None:
    """List models with their latest version and aliases."""
    with transaction(create=False) as session:
        models = RegistryService(session).list_models()
    table = Table("name", "latest", "aliases", "created")
    for model in models.data:
        aliases = ", ".join(f"{a}->v{v}" for a, v in sorted(model.aliases.items()))
        table.add_row(
            model.name,
            str(model.latest_version or "-"),
            aliases,
            model.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    out().print(table)


@app.command("show")
def show(name: str) -> None:
    """Show a model's versions: format, schema size, metrics, environment."""
    with transaction(create=False) as session:
        model = RegistryService(session).get_model(name)
    table = Table(
        "version",
        "aliases",
        "format",
        "task",
        "features",
        "metrics",
        "scikit-learn",
        "onnx",
        "created",
        title=f"{model.name} (runtime: {model.serving.runtime})",
    )
    for v in model.versions:
        trained = str(v.environment.get("scikit-learn", "?"))
        if v.sklearn_version_mismatch:
            trained = f"[bold yellow]{trained} (server {server_sklearn_version()})[/]"
        table.add_row(
            str(v.version),
            ", ".join(v.aliases),
            v.format,
            v.output.task,
            str(len(v.input_schema.features)),
            metrics_summary(v.metrics),
            trained,
            f"yes ({v.onnx.max_abs_diff:.0e})" if v.onnx else "no",
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    out().print(table)
    for version in model.versions:
        warn_if_mismatch(version)


def _read_schema(path: Path) -> InputSchema:
    try:
        return parse_schema_document(orjson.loads(path.read_bytes()))
    except (OSError, orjson.JSONDecodeError, ValidationError) as exc:
        raise ValidationFailed(f"Cannot use schema file {path}.", details=str(exc)) from exc


@app.command("register")
def register(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    name: Annotated[str, typer.Option(help="Model name.")],
    schema: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Input schema JSON; omitted: built from the feature names the model carries.",
        ),
    ] = None,
    description: Annotated[str, typer.Option(help="What this version is.")] = "",
    alias: Annotated[str | None, typer.Option(help="Point this alias at the new version.")] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            help="For a new model: onnx (its verified ONNX twins serve) or sklearn (pinned); "
            "omitted: MODELSERVE_DEFAULT_RUNTIME, onnx unless set. A model keeps its own.",
        ),
    ] = None,
) -> None:
    """Register a model file (skops, joblib, pickle; XGBoost .json/.ubj, LightGBM .txt, ONNX)
    as a new version, loaded safely first."""
    try:
        meta = RegistrationMetadata(
            name=name,
            input_schema=_read_schema(schema) if schema else None,
            description=description,
            alias=alias,
            runtime=runtime,
        )
    except ValidationError as exc:
        raise ValidationFailed("Invalid registration options.", details=str(exc)) from exc
    settings = load_settings()
    with transaction(settings) as session:
        version = RegistryService(session).register(
            file.read_bytes(),
            meta,
            filename=file.name,
            limits=SandboxLimits.of(settings),
            default_runtime=settings.default_runtime,
        )
    out().print("[green]registered[/]")
    if version.input_schema_source:
        names = len(version.input_schema.features)
        out().print(f"schema: built from the model's {names} feature names, all numeric")
    print_version(version)
    if alias:
        move_alias(name, alias, version.version)


def move_alias(name: str, alias: str, number: int) -> None:
    """Move an alias once the version is warm everywhere, and say so."""
    with lifecycle() as service:
        moved = service.move_alias(name, alias, number)
    _print_move(moved)


def _print_move(moved: AliasPublic) -> None:
    before = f" (was v{moved.previous_version})" if moved.previous_version else ""
    out().print(f"[green]{moved.model}@{moved.alias} -> v{moved.version}[/]{before}")


@app.command("alias")
def alias(name: str, alias: str, version: int) -> None:
    """Point ALIAS of model NAME at VERSION, once it is loaded and has answered a probe in every
    live server process (the alias stays put if it fails anywhere)."""
    move_alias(name, alias, version)


AliasOption = Annotated[str, typer.Option(help="The alias to act on.")]


@app.command("rollback")
def rollback(name: str, alias: AliasOption = DEFAULT_ALIAS) -> None:
    """Move ALIAS back to the version it pointed at before its last move (from the audit
    trail), after the same warm-up as any move."""
    with lifecycle() as service:
        moved = service.rollback(name, alias)
    _print_move(moved)


@app.command("traffic")
def traffic(
    name: str,
    alias: AliasOption = DEFAULT_ALIAS,
    canary: Annotated[int | None, typer.Option(help="Version taking a share of callers.")] = None,
    percent: Annotated[
        float, typer.Option(min=0, max=100, help="Share of callers (sticky) for the canary.")
    ] = 10.0,
    shadow: Annotated[
        int | None, typer.Option(help="Version run on a copy of every request, only logged.")
    ] = None,
    clear: Annotated[bool, typer.Option(help="Remove the alias's canary and shadow.")] = False,
) -> None:
    """Show, set or clear the traffic policy (canary, shadow) of one alias of model NAME."""
    with lifecycle() as service:
        if clear or canary is not None or shadow is not None:
            try:
                update = TrafficUpdate(
                    alias=alias,
                    canary=CanarySpec(version=canary, percent=percent) if canary else None,
                    shadow=ShadowSpec(version=shadow) if shadow else None,
                )
            except ValidationError as exc:
                raise ValidationFailed("Invalid traffic options.", details=str(exc)) from exc
            policy = service.set_traffic(name, update)
        else:
            policy = service.get_traffic(name, alias)
    if clear:
        out().print(f"cleared the canary and shadow of [bold]{name}@{policy.alias}[/]")
    line = f"[bold]{name}@{policy.alias}[/] -> v{policy.version}"
    if policy.canary:
        line += f"; canary v{policy.canary.version} for {policy.canary.percent:g}% of callers"
    if policy.shadow:
        line += f"; shadow v{policy.shadow.version}"
    out().print(line)
