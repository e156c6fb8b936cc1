"""Announcing registry changes: a generation counter every process can poll, a NOTIFY on
PostgreSQL so listeners wake at once, and an in-process hook run after the commit."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from modelserve.core.db import Database
from modelserve.lifecycle.models import RegistryState

CHANNEL = "modelserve_registry"
_CHANGED = "modelserve_registry_changed"


def announce(session: Session) -> None:
    """Mark the caller's transaction as changing what serves traffic: the generation grows and,
    on PostgreSQL, listeners are notified when (and only if) the transaction commits."""
    session.execute(
        update(RegistryState)
        .where(RegistryState.id == 1)
        .values(generation=RegistryState.generation + 1)
    )
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(CHANNEL, "")))
    session.info[_CHANGED] = True


def generation(session: Session) -> int:
    """The registry's current generation."""
    value = session.scalar(select(RegistryState.generation).where(RegistryState.id == 1))
    return int(value or 0)


def on_local_commit(db: Database, callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` after any session of ``db`` commits an announced change (so the process
    that made a change sees it before it answers). Returns a function that removes the hook."""

    def after_commit(session: Session) -> None:
        if session.info.pop(_CHANGED, False):
            callback()

    def after_rollback(session: Session) -> None:
        session.info.pop(_CHANGED, None)

    event.listen(db.sessions, "after_commit", after_commit)
    event.listen(db.sessions, "after_rollback", after_rollback)

    def remove() -> None:
        event.remove(db.sessions, "after_commit", after_commit)
        event.remove(db.sessions, "after_rollback", after_rollback)

    return remove
