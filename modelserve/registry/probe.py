"""Check at registration that a model accepts inputs matching its schema, and describe what it
outputs, so a broken pairing fails then and not at the first prediction."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelserve.core.errors import InvalidArtifact
from modelserve.inference.native import make_predictor, native_output
from modelserve.inference.predictor import PREDICT_PROBA
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


def _sample_number(spec: FeatureSpec, rng: np.random.Generator) -> float:
    """A value inside the feature's bounds; unbounded sides spread over magnitudes 0.01..1e5."""
    low, high = spec.minimum, spec.maximum
    magnitude = 0.0 if rng.random() < 0.05 else float(10 ** rng.uniform(-2, 5))
    if low is not None and high is not None:
        value = float(rng.uniform(low, high))
    elif low is not None:
        value = low + magnitude
    elif high is not None:
        value = high - magnitude
    else:
        value = magnitude if rng.random() < 0.5 else -magnitude
    if spec.type is FeatureType.INTEGER:
        value = float(np.round(value))
        if low is not None and value < low:
            value = float(np.ceil(low))
        if high is not None and value > high:
            value = float(np.floor(high))
    return value


def _sample_value(spec: FeatureSpec, rng: np.random.Generator) -> Any:
    if spec.nullable and rng.random() < 0.1:
        return None
    if spec.type is FeatureType.BOOLEAN:
        return bool(rng.random() < 0.5)
    if spec.type is FeatureType.CATEGORY:
        categories = spec.categories or []
        return categories[int(rng.integers(len(categories)))]
    return _sample_number(spec, rng)


def sample_instances(schema: InputSchema, rows: int, seed: int = 0) -> list[dict[str, Any]]:
    """The probe rows, then random rows inside the schema (bounds, categories, nulls where
    nullable) up to ``rows``: a reproducible sample to compare two runtimes of a model on."""
    rng = np.random.default_rng(seed)
    sample = probe_instances(schema)
    while len(sample) < rows:
        sample.append({f.name: _sample_value(f, rng) for f in schema.features})
    return sample


def describe_output(estimator: Any, schema: InputSchema) -> OutputSpec:
    """Classification with labels, or regression; raises InvalidArtifact when the model cannot
    predict on schema-conforming rows."""
    classes = getattr(estimator, "classes_", None)
    native = native_output(estimator)  # a Booster or an ONNX file: read from the model
    if native is not None:
        output = native
    elif classes is not None:
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
        make_predictor(estimator, schema, output).predict(batch)
    except MemoryError:  # the sandbox answers it as its memory limit
        raise
    except Exception as exc:
        raise InvalidArtifact(
            "The model cannot predict on inputs matching the given schema.",
            details={"error": f"{type(exc).__name__}: {exc}"},
        ) from exc
    return output
