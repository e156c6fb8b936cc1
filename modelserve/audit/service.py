"""Recording and reading security events; knows nothing of HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from modelserve.audit.models import AuditEvent
from modelserve.audit.schemas import AuditEventPublic, AuditPage
from modelserve.core.db import Database
from modelserve.core.pagination import decode_cursor, encode_cursor


@dataclass(frozen=True)
class Actor:
    """Who did something, and from where (``user_id`` None for the CLI or an anonymous caller)."""

    user_id: int | None
    name: str
    address: str | None = None


CLI_ACTOR = Actor(user_id=None, name="cli")


def record(
    session: Session, action: str, actor: Actor, target: str | None = None, **details: Any
) -> None:
    """Add an event to the caller's transaction (it commits or rolls back with the change)."""
    session.add(
        AuditEvent(
            action=action,
            actor_id=actor.user_id,
            actor=actor.name,
            target=target,
            address=actor.address,
            details=details,
        )
    )


def record_now(
    db: Database, action: str, actor: Actor, target: str | None = None, **details: Any
) -> None:
    """Record an event in its own transaction, for failures whose request rolls back."""
    with db.transaction() as session:
        record(session, action, actor, target, **details)


def list_events(
    session: Session, *, action: str | None, limit: int, cursor: str | None
) -> AuditPage:
    """Newest-first page of events."""
    statement = select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    if action:
        statement = statement.where(AuditEvent.action == action)
    if cursor:
        statement = statement.where(
            tuple_(AuditEvent.created_at, AuditEvent.id) < decode_cursor(cursor)
        )
    rows = session.scalars(statement.limit(limit + 1)).all()
    data = [AuditEventPublic.model_validate(row, from_attributes=True) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(data[-1].created_at, data[-1].id)
    return AuditPage(data=data, next_cursor=next_cursor)
