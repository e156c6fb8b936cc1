"""Check at registration that a model accepts inputs matching its schema, and describe what it
outputs, so a broken pairing fails then and not at the first prediction."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelserve.core.errors import InvalidArtifact
from modelserve.inference.predictor import PREDICT_PROBA, Predictor
from modelserve.inference.validation import CompiledValidator
from modelserve.registry.schemas import FeatureSpec, FeatureType, InputSchema, OutputSpec


def _probe_value(spec: FeatureSpec, high: bool) -> Any:
    if spec.type is FeatureType.BOOLEAN:
        return high
    if spec.type is FeatureType.CATEGORY:
        categories = spec.categories or []
        return categories[-1] if high else categories[0]
    value = 1.0 if high else 0.0
    if spec.minimum is not None:
        value = max(value, spec.minimum)
    if spec.maximum is not None:
        value = min(value, spec.maximum)
    if spec.type is FeatureType.INTEGER:
        value = float(np.ceil(value)) if spec.minimum is not None else float(np.floor(value))
    return value


def probe_instances(schema: InputSchema) -> list[dict[str, Any]]:
    """Two schema-conforming rows."""
    return [{f.name: _probe_value(f, high) for f in schema.features} for high in (False, True)]


def describe_output(estimator: Any, schema: InputSchema) -> OutputSpec:
    """Classification with labels, or regression; raises InvalidArtifact when the model cannot
    predict on schema-conforming rows."""
    classes = getattr(estimator, "classes_", None)
    if classes is not None:
        output = OutputSpec(
            task="classification",
            classes=np.asarray(classes).tolist(),
            probabilities=hasattr(estimator, PREDICT_PROBA),
        )
    else:
        output = OutputSpec(task="regression")
    validator = CompiledValidator(schema, max_rows=2)
    batch = validator.validate({"instances": probe_instances(schema)})
    try:
        Predictor(estimator, schema, output).predict(batch)
    except Exception as exc:
        raise InvalidArtifact(
            "The model cannot predict on inputs matching the given schema.",
            details={"error": f"{type(exc).__name__}: {exc}"},
        ) from exc
    return output
