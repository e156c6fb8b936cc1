"""Audit schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditEventPublic(BaseModel):
    """One security event."""

    id: int
    created_at: datetime
    action: str
    actor_id: int | None
    actor: str | None
    target: str | None
    address: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    """A newest-first page of events."""

    data: list[AuditEventPublic]
    next_cursor: str | None
