"""Opaque keyset cursors for newest-first lists ordered by (created_at, id)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from modelserve.core.errors import ValidationFailed


def encode_cursor(created_at: datetime, row_id: int) -> str:
    """An opaque cursor for the row after which the next page starts."""
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Inverse of ``encode_cursor``; ValidationFailed on anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|")
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("naive cursor time")
        return created_at, int(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            "Invalid cursor.", details=[{"loc": ["query", "cursor"], "message": str(exc)}]
        ) from exc
