"""The input schema of a registration that gave none: built from the feature names the model
file carries, every feature a number; and the optional libraries a model needs."""

from __future__ import annotations

from typing import Any

from modelserve.core.errors import ValidationFailed
from modelserve.registry.formats import NATIVE_LIBRARIES
from modelserve.registry.formats.libraries import library_of, version
from modelserve.registry.schemas import InputSchema

FROM_FEATURE_NAMES = "feature_names"
"""``input_schema_source`` of a schema built from the model's feature names."""


def complete_schema(given: InputSchema | None, model: Any) -> tuple[InputSchema, str | None]:
    """The schema to register with, and where it came from (None: the caller gave it).

    Without one, the model's feature names (``feature_names_in_``, a Booster's feature names,
    an ONNX file's per-feature inputs) become numeric features; a model that names none is a
    422 asking for a schema."""
    if given is not None:
        return given, None
    from modelserve.inference.native import feature_names

    names = feature_names(model)
    if not names:
        raise ValidationFailed(
            "No input schema was given and the model file does not name its features: pass "
            "one (--schema schema.json, or input_schema in the metadata), or save the model "
            "fitted on a DataFrame so it carries its column names.",
            details={"input_schema": "required for this model"},
        )
    schema = InputSchema.model_validate(
        {"features": [{"name": n, "type": "number"} for n in names]}
    )
    return schema, FROM_FEATURE_NAMES


def model_libraries(model: Any, fmt: str) -> dict[str, str]:
    """``{library: version}`` of the optional libraries the model needs to load."""
    library = NATIVE_LIBRARIES.get(fmt) or library_of(model)
    found = version(library) if library else None
    return {library: found} if library and found else {}
