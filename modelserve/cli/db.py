"""``modelserve db``: migrations."""

from __future__ import annotations

import typer

from modelserve.cli.common import database_exists, load_settings, masked_url, out
from modelserve.core import migrate
from modelserve.core.db import Database

app = typer.Typer(help="Database migrations.", no_args_is_help=True, rich_markup_mode=None)


@app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply pending migrations."""
    settings = load_settings()
    settings.ensure_data_dir()
    migrate.upgrade(settings.resolved_database_url, revision)
    out().print(f"[green]database at {revision}[/]")


@app.command("downgrade")
def downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. base.")) -> None:
    """Revert migrations."""
    migrate.downgrade(load_settings().resolved_database_url, revision)
    out().print(f"[yellow]database at {revision}[/]")


@app.command("current")
def current() -> None:
    """Show the database's revision and the newest one shipped (creating no database)."""
    url = load_settings().resolved_database_url
    if not database_exists(url):
        out().print(f"current: none (no database at {masked_url(url)})", highlight=False)
        out().print(f"head:    {migrate.head_revision()}")
        return
    db = Database(url, pool_size=1)
    try:
        out().print(f"current: {migrate.current_revision(db.engine)}")
        out().print(f"head:    {migrate.head_revision()}")
    finally:
        db.dispose()
