"""Prediction-log HTTP routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from modelserve.auth.caller import Caller
from modelserve.core.errors import ERROR_RESPONSES, NotFound
from modelserve.core.pagination import encode_cursor
from modelserve.deps import CallerDep, SessionDep, StateDep
from modelserve.predictions.schemas import PredictionsPage
from modelserve.predictions.service import PredictionQueryService

router = APIRouter(prefix="/v1/predictions", tags=["predictions"], responses=ERROR_RESPONSES)


@router.get("", response_model=PredictionsPage, summary="Read the prediction log")
def list_predictions(
    caller: CallerDep,
    session: SessionDep,
    state: StateDep,
    model: Annotated[str | None, Query(max_length=128, description="Only this model.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=256, description="From next_cursor.")] = None,
) -> PredictionsPage:
    """Logged predictions, newest first, a page at a time: your own (admins: everyone's); with
    an API key restricted to some models, only those models'."""
    if model is not None:
        caller.require_model(model)
    state.log_writer.flush(timeout=5)  # read your writes: what this process has queued
    if model is None and caller.key_models is not None:
        return _restricted_page(session, caller, caller.key_models, limit, cursor)
    return PredictionQueryService(session).list(
        model=model, limit=limit, cursor=cursor, user_id=_owner(caller)
    )


def _owner(caller: Caller) -> int | None:
    return None if caller.is_admin else caller.user_id


def _restricted_page(
    session: Session, caller: Caller, models: frozenset[str], limit: int, cursor: str | None
) -> PredictionsPage:
    # One keyset page per allowed model, merged: the cursor (created_at, id) orders the whole
    # log, so the newest ``limit`` of the merged pages are the page of all those models.
    service = PredictionQueryService(session)
    pages = []
    for name in sorted(models):
        try:
            pages.append(
                service.list(model=name, limit=limit, cursor=cursor, user_id=_owner(caller))
            )
        except NotFound:
            continue  # a key may name a model that does not exist (yet, or any more)
    merged = sorted(
        (row for page in pages for row in page.data),
        key=lambda row: (row.created_at, row.id),
        reverse=True,
    )
    data = merged[:limit]
    more = len(merged) > limit or any(page.next_cursor for page in pages)
    next_cursor = encode_cursor(data[-1].created_at, data[-1].id) if more and data else None
    return PredictionsPage(data=data, next_cursor=next_cursor)
