"""The prediction log records which runtime ran the model (sklearn or onnx).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 14:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision (a nullable column: rows logged before it read back null)."""
    op.add_column("predictions", sa.Column("runtime", sa.String(length=16), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("runtime")
