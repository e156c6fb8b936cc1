"""``modelserve info``: what this command line would use, and where it came from."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr
from rich.table import Table

from modelserve.auth.secret import SECRET_FILE
from modelserve.cli.common import database_exists, load_settings, masked_url, out
from modelserve.config import Settings
from modelserve.core import migrate
from modelserve.core.db import Database

MASK = "********"


def _shown(name: str, value: Any) -> str:
    if isinstance(value, SecretStr):
        return MASK
    if name == "database_url" and isinstance(value, str):
        return masked_url(value)
    return "-" if value is None else str(value)


def _source(settings: Settings, name: str) -> str:
    # Built from the environment only, so a field that was set came from its variable.
    return f"MODELSERVE_{name.upper()}" if name in settings.model_fields_set else "default"


def _migration_state(url: str) -> str:
    head = migrate.head_revision()
    try:
        if not database_exists(url):
            return f"no database yet (the first command that writes creates it at {head})"
        db = Database(url, pool_size=1)
        try:
            current = migrate.current_revision(db.engine)
        finally:
            db.dispose()
    except Exception as exc:  # any driver error: info must still show the rest
        return f"cannot connect: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    if current == head:
        return f"at head ({head})"
    return f"{current}; {head} pending (applied by the next command or `modelserve db upgrade`)"


def info() -> None:
    """Show the settings in force (secrets masked), which database and data dir, and the
    migration state."""
    settings = load_settings()
    url = settings.resolved_database_url
    console = out()
    console.print(f"data dir:   {settings.data_dir.resolve()}", highlight=False)
    console.print(f"database:   {masked_url(url)}", highlight=False)
    console.print(f"migrations: {_migration_state(url)}", highlight=False)
    if settings.secret_key is None:
        key_file = settings.data_dir.resolve() / SECRET_FILE
        state = "present" if key_file.exists() else "created on first start"
        console.print(f"JWT key:    {key_file} ({state})", highlight=False)
    table = Table("setting", "value", "from", title="settings")
    for name in Settings.model_fields:
        value = getattr(settings, name)
        table.add_row(name, _shown(name, value), _source(settings, name))
    console.print(table)
