"""``modelserve models``: list, show, register, alias."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from pydantic import ValidationError
from rich.table import Table

from modelserve.cli.common import err, out, transaction
from modelserve.core.errors import ValidationFailed
from modelserve.registry.environment import server_sklearn_version
from modelserve.registry.schemas import InputSchema, RegistrationMetadata, VersionPublic
from modelserve.registry.service import RegistryService

app = typer.Typer(help="The model registry.", no_args_is_help=True)


def _metrics_summary(metrics: dict[str, Any]) -> str:
    parts = []
    for key, value in metrics.items():
        if isinstance(value, dict) and "mean" in value:
            parts.append(f"{key}={value['mean']:.3f}")
    return ", ".join(parts[:4])


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
        out().print(f"metrics: {_metrics_summary(version.metrics)}")
    warn_if_mismatch(version)


@app.command("list")
def list_models() -> None:
    """List models with their latest version and aliases."""
    with transaction() as session:
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
    with transaction() as session:
        model = RegistryService(session).get_model(name)
    table = Table(
        "version",
        "aliases",
        "format",
        "task",
        "features",
        "metrics",
        "scikit-learn",
        "created",
        title=model.name,
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
            _metrics_summary(v.metrics),
            trained,
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    out().print(table)
    for version in model.versions:
        warn_if_mismatch(version)


def _read_schema(path: Path) -> InputSchema:
    try:
        raw = orjson.loads(path.read_bytes())
        if isinstance(raw, dict) and "input_schema" in raw:
            raw = raw["input_schema"]
        return InputSchema.model_validate(raw)
    except (OSError, orjson.JSONDecodeError, ValidationError) as exc:
        raise ValidationFailed(f"Cannot use schema file {path}.", details=str(exc)) from exc


@app.command("register")
def register(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    name: Annotated[str, typer.Option(help="Model name.")],
    schema: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Input schema JSON.")],
    description: Annotated[str, typer.Option(help="What this version is.")] = "",
    alias: Annotated[str | None, typer.Option(help="Point this alias at the new version.")] = None,
) -> None:
    """Register a skops, joblib or pickle file as a new version (loaded safely first)."""
    try:
        meta = RegistrationMetadata(
            name=name, input_schema=_read_schema(schema), description=description, alias=alias
        )
    except ValidationError as exc:
        raise ValidationFailed("Invalid registration options.", details=str(exc)) from exc
    with transaction() as session:
        version = RegistryService(session).register(file.read_bytes(), meta, filename=file.name)
    out().print("[green]registered[/]")
    print_version(version)


@app.command("alias")
def alias(name: str, alias: str, version: int) -> None:
    """Point ALIAS of model NAME at VERSION."""
    with transaction() as session:
        moved = RegistryService(session).set_alias(name, alias, version)
    before = f" (was v{moved.previous_version})" if moved.previous_version else ""
    out().print(f"[green]{name}@{alias} -> v{moved.version}[/]{before}")
