"""The user's say over the inferred schema: which columns are features, and constraints merged
from a schema file (``train --schema``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from pydantic import ValidationError

from modelserve.core.errors import ValidationFailed
from modelserve.registry.schemas import FeatureSpec, FeatureType, InputSchema, book_column

_NOT_OVERRIDDEN = frozenset({"name", "observed"})
"""Keys a schema file cannot set: the name matches, the profile is measured."""


def select_columns(
    df: pd.DataFrame, target: str, features: list[str] | None, drop: list[str] | None
) -> pd.DataFrame:
    """``df`` restricted to ``features`` (in that order) minus ``drop``, plus the target; every
    name must be a column other than the target."""
    named = [*(features or []), *(drop or [])]
    unknown = [n for n in named if n not in df.columns]
    if unknown:
        raise ValidationFailed(
            f"Unknown column(s): {', '.join(unknown)}.",
            details={"unknown": unknown, "available_columns": [str(c) for c in df.columns]},
        )
    if target in named:
        raise ValidationFailed(
            f"The target {target!r} cannot be selected or dropped as a feature.",
            details={"target": target},
        )
    duplicated = sorted({n for n in features or [] if (features or []).count(n) > 1})
    if duplicated:
        raise ValidationFailed(
            "A column is selected twice.", details={"duplicate_columns": duplicated}
        )
    columns = list(features) if features else [c for c in df.columns if c != target]
    dropped = set(drop or [])
    kept = [c for c in columns if c not in dropped]
    if not kept:
        raise ValidationFailed("No feature column is left after --features and --drop.")
    return df[[*kept, target]]


def override_entries(raw: Any) -> list[dict[str, Any]]:
    """The feature entries of a schema document (ours or the book's, optionally wrapped in
    ``input_schema``); entries may omit ``type`` (the inferred one is kept)."""
    if isinstance(raw, dict) and "input_schema" in raw and len(raw) == 1:
        raw = raw["input_schema"]
    entries: Any = None
    if isinstance(raw, dict) and "features" in raw:
        entries = raw["features"]
    elif isinstance(raw, dict) and "columns" in raw:
        entries = raw["columns"]
        if isinstance(entries, list):
            entries = [book_column(entry) for entry in entries]
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries
    ):
        raise ValidationFailed(
            "A schema file holds {'features': [...]} (or the book's {'input_schema': "
            "{'columns': [...]}}), each entry an object with a 'name'."
        )
    return entries


def apply_overrides(schema: InputSchema, raw: Any) -> InputSchema:
    """``schema`` with each feature the document names updated by the keys it gives (type,
    nullable, minimum, maximum, categories, description). Naming a feature the data does not
    have, or giving inconsistent constraints, is a ValidationFailed."""
    entries = override_entries(raw)
    by_name = {f.name: f for f in schema.features}
    unknown = [e["name"] for e in entries if e["name"] not in by_name]
    if unknown:
        raise ValidationFailed(
            f"The schema file names feature(s) the training data does not have: "
            f"{', '.join(unknown)}.",
            details={"unknown": unknown, "features": schema.names},
        )
    merged = dict(by_name)
    problems: list[str] = []
    for entry in entries:
        inferred = by_name[entry["name"]]
        changes = {k: v for k, v in entry.items() if k not in _NOT_OVERRIDDEN}
        base = inferred.model_dump(exclude={"observed"})
        if changes.get("type", inferred.type) != FeatureType.CATEGORY:
            base["categories"] = None  # a category turned into another type keeps none
        try:
            merged[inferred.name] = FeatureSpec.model_validate({**base, **changes})
        except ValidationError as exc:
            problems.extend(f"{inferred.name}: {e['msg']}" for e in exc.errors())
    if problems:
        raise ValidationFailed("The schema file's constraints do not fit.", details=problems)
    return InputSchema(features=[merged[name] for name in schema.names])
