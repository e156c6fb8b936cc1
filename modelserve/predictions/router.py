"""Prediction-log HTTP routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from modelserve.core.errors import ERROR_RESPONSES
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
    """Logged predictions, newest first, a page at a time: your own (admins: everyone's)."""
    if model is not None:
        caller.require_model(model)
    owner = None if caller.is_admin else caller.user_id
    state.log_writer.flush(timeout=5)  # read your writes: what this process has queued
    return PredictionQueryService(session).list(
        model=model, limit=limit, cursor=cursor, user_id=owner
    )
