"""Which registered versions this server cannot load for want of an optional library, for
``/readyz``: a version needs XGBoost or LightGBM when its format is theirs or its environment
(recorded at registration) names them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelserve.registry.formats import NATIVE_LIBRARIES
from modelserve.registry.formats.libraries import installed
from modelserve.registry.models import Model, ModelVersion

OPTIONAL = ("xgboost", "lightgbm")


def unloadable_versions(session: Session) -> list[dict[str, Any]]:
    """``{model, version, needs}`` for every version whose library is missing here; no query
    when every optional library is installed."""
    missing = [library for library in OPTIONAL if not installed(library)]
    if not missing:
        return []
    rows = session.execute(
        select(Model.name, ModelVersion.number, ModelVersion.format, ModelVersion.environment)
        .join(Model, Model.id == ModelVersion.model_id)
        .order_by(Model.name, ModelVersion.number)
    )
    found = []
    for name, number, fmt, environment in rows:
        needs = {NATIVE_LIBRARIES.get(fmt), *(environment or {})} & set(missing)
        if needs:
            found.append({"model": name, "version": number, "needs": sorted(needs)})
    return found
