"""``/healthz`` (process alive) and ``/readyz`` (database reachable, migrations at head, the
prediction-log writer running)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response

from modelserve.core import migrate
from modelserve.core.errors import ErrorBody, error_response
from modelserve.core.responses import ORJSONResponse
from modelserve.deps import StateDep
from modelserve.registry.formats.readiness import unloadable_versions

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness", responses={503: {"model": ErrorBody}})
def readyz(state: StateDep) -> Response:
    """Ready when the database answers, its schema is at the newest migration and the
    prediction-log writer runs."""
    writer = state.log_writer
    checks: dict[str, Any] = {
        "prediction_log": "ok" if writer.alive else "writer down",
        "prediction_log_restarts": writer.restarts,
    }
    try:
        with state.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
        current = migrate.current_revision(state.db.engine)
        head = migrate.head_revision()
        checks["migrations"] = "head" if current == head else f"at {current}, head is {head}"
        if current == head:
            with state.db.sessions() as session:  # missing XGBoost/LightGBM: who cannot load
                unloadable = unloadable_versions(session)
            if unloadable:
                checks["unloadable_versions"] = unloadable
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    if checks["database"] == "ok" and checks.get("migrations") == "head" and writer.alive:
        return ORJSONResponse({"status": "ready", **checks})
    body = ErrorBody(code="not_ready", message="Not ready.", details=checks)
    return error_response(503, body)
