"""Root command: ``modelserve``."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from modelserve.cli import db, info, models, serve, train, users
from modelserve.cli.common import render_error
from modelserve.core.errors import AppError


class _AppErrorGroup(TyperGroup):
    """Renders application errors for a person (exit status 1) instead of a traceback."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command, translating AppError."""
        try:
            return super().invoke(ctx)
        except AppError as exc:
            render_error(exc)
            raise typer.Exit(1) from exc


app = typer.Typer(
    name="modelserve",
    cls=_AppErrorGroup,
    help="Train, register and serve scikit-learn models behind a validated, logged API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Click's plain help: Typer's rich help prints "<bool>" after every flag.
    rich_markup_mode=None,
)
app.add_typer(db.app, name="db")
app.add_typer(models.app, name="models")
app.add_typer(users.app, name="users")
app.add_typer(users.keys_app, name="api-keys")
app.command("train")(train.train)
app.command("serve")(serve.serve)
app.command("demo")(serve.demo)
app.command("info")(info.info)


def main() -> None:
    """Console-script entry point."""
    app()
