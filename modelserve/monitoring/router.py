"""``GET /metrics``: this process's metrics in the Prometheus text format (admins only)."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from modelserve.core.errors import ERROR_RESPONSES
from modelserve.deps import AdminDep, StateDep

router = APIRouter(tags=["monitoring"], responses=ERROR_RESPONSES)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
def metrics(state: StateDep, caller: AdminDep) -> Response:
    """This process's prediction-log queue depth and written, spilled, replayed counts, for a
    Prometheus scraper holding an admin API key (``authorization: {credentials: <key>}``).
    Each server process answers for itself."""
    return Response(generate_latest(state.metrics), media_type=CONTENT_TYPE_LATEST)
