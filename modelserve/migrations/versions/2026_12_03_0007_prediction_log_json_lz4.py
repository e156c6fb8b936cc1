"""PostgreSQL: the prediction log's JSON columns as ``json`` compressed with lz4.

The log is written on every request and read back whole: ``jsonb`` converted every value to its
binary form on insert (each number a ``numeric``), and pglz compressed the large ones; a 100-row
record cost PostgreSQL 2.4 ms of CPU, 0.7 ms as ``json`` with lz4 (1 row: 65 -> 50 us). ``json``
also keeps the text as it was written (key order included). lz4 is used where the server was
built with it (it is listed in ``default_toast_compression``'s values); SQLite is unchanged.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 15:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("inputs", "outputs", "error")


def _has_lz4() -> bool:
    values = op.get_bind().execute(
        sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    )
    row = values.first()
    return row is not None and "lz4" in (row[0] or [])


def _alter(clause: str) -> None:
    op.execute(
        "ALTER TABLE predictions "
        + ", ".join(f"ALTER COLUMN {name} {clause.format(name=name)}" for name in COLUMNS)
    )


def upgrade() -> None:
    """Apply this revision (PostgreSQL rewrites the table once)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    _alter("TYPE json USING {name}::json")
    if _has_lz4():
        _alter("SET COMPRESSION lz4")


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name != "postgresql":
        return
    _alter("TYPE jsonb USING {name}::jsonb")
    if _has_lz4():
        _alter("SET COMPRESSION default")
