"""Audit log route (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from modelserve.audit.schemas import AuditPage
from modelserve.audit.service import list_events
from modelserve.core.errors import ERROR_RESPONSES
from modelserve.deps import AdminDep, SessionDep

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=ERROR_RESPONSES)


@router.get("", response_model=AuditPage, summary="Read the audit log")
def audit(
    _: AdminDep,
    session: SessionDep,
    action: Annotated[str | None, Query(max_length=48)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
) -> AuditPage:
    """Security events, newest first. Admins only."""
    return list_events(session, action=action, limit=limit, cursor=cursor)
