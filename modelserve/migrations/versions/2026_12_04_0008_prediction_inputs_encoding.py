"""The prediction log says how a record's inputs are spelled: null for JSON as the request
carried it, ``flat`` for a matrix's values row after row as a flat V2 tensor carried them,
``float64`` for values that arrived as binary doubles, kept as the base64 text of those doubles
(the API reads both back as the same columnar JSON; see ``predictions.inputs``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 02:00:00
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision (a nullable column: rows logged before it are JSON as they came)."""
    op.add_column("predictions", sa.Column("inputs_encoding", sa.String(length=16), nullable=True))


def _spelled_out(inputs: Any, encoding: str) -> dict[str, Any]:
    # Written out here, not imported: a migration stays as it was when the package changes.
    stored = json.loads(inputs) if isinstance(inputs, str) else inputs
    columns, data = stored["columns"], stored["data"]
    if encoding == "flat":
        values = np.array(data, dtype=object)
    else:
        values = np.frombuffer(base64.b64decode(data), dtype="<f8")
    return {"columns": columns, "data": values.reshape(-1, len(columns)).tolist()}


def downgrade() -> None:
    """Revert this revision: compact inputs are spelled out as columnar JSON first."""
    bind = op.get_bind()
    found = bind.execute(
        sa.text(
            "SELECT id, inputs, inputs_encoding FROM predictions WHERE inputs_encoding IS NOT NULL"
        )
    ).all()
    for row_id, inputs, encoding in found:
        bind.execute(
            sa.text("UPDATE predictions SET inputs = :inputs WHERE id = :id"),
            {"inputs": json.dumps(_spelled_out(inputs, encoding)), "id": row_id},
        )
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("inputs_encoding")
