"""Root command: ``modelserve``."""

from __future__ import annotations

import sys

import typer

from modelserve.cli import db, models, serve, train
from modelserve.cli.common import render_error
from modelserve.core.errors import AppError

app = typer.Typer(
    name="modelserve",
    help="Train, register and serve scikit-learn models behind a validated, logged API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(models.app, name="models")
app.command("train")(train.train)
app.command("serve")(serve.serve)
app.command("demo")(serve.demo)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except AppError as exc:
        render_error(exc)
        sys.exit(1)
