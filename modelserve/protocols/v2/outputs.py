"""V2 results as output tensors, and the metadata of a version's inputs and outputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelserve.core.errors import BadRequest
from modelserve.inference.predictor import PREDICT, PREDICT_PROBA, PredictionResult
from modelserve.protocols.v2.schemas import Datatype, InferenceRequest, TensorMetadata
from modelserve.registry.schemas import FeatureType, InputSchema, OutputSpec

_FEATURE_DATATYPES: dict[FeatureType, Datatype] = {
    FeatureType.NUMBER: "FP64",
    FeatureType.INTEGER: "INT64",
    FeatureType.BOOLEAN: "BOOL",
    FeatureType.CATEGORY: "BYTES",
}

_LABEL_TYPES = frozenset({bool, int, float, str})


def _label_datatype(labels: list[Any]) -> Datatype:
    types = set(map(type, labels))
    if types <= _LABEL_TYPES:  # the usual labels, told by their types at once
        if types <= {bool}:
            return "BOOL"
        if types == {int}:
            return "INT64"
        return "FP64" if types <= {int, float} else "BYTES"
    if all(isinstance(v, bool) for v in labels):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        return "INT64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in labels):
        return "FP64"
    return "BYTES"


def available_outputs(output: OutputSpec) -> list[str]:
    """Output names a version offers."""
    return [PREDICT, PREDICT_PROBA] if output.probabilities else [PREDICT]


def output_metadata(output: OutputSpec) -> list[TensorMetadata]:
    """Metadata of a version's outputs."""
    labels = output.classes if output.task == "classification" else [0.0]
    meta = [TensorMetadata(name=PREDICT, datatype=_label_datatype(list(labels or [])), shape=[-1])]
    if output.probabilities:
        width = len(output.classes or [])
        meta.append(TensorMetadata(name=PREDICT_PROBA, datatype="FP64", shape=[-1, width]))
    return meta


def input_metadata(schema: InputSchema) -> list[TensorMetadata]:
    """Metadata of a version's inputs, one per feature."""
    return [
        TensorMetadata(name=f.name, datatype=_FEATURE_DATATYPES[f.type], shape=[-1])
        for f in schema.features
    ]


def to_outputs(
    request: InferenceRequest, output: OutputSpec, result: PredictionResult
) -> list[dict[str, Any]]:
    """The requested (default: all) output tensors, as the JSON objects of ``TensorOutput``
    (made as dicts: pydantic models cost more than the rest of a one-row answer's body), the
    probabilities' data a flat array when it came as a matrix."""
    offered = available_outputs(output)
    wanted = [o.name for o in request.outputs] if request.outputs else offered
    unknown = [name for name in wanted if name not in offered]
    if unknown:
        raise BadRequest(f"Unknown output(s) {unknown}; this model offers {offered}.")
    tensors: list[dict[str, Any]] = []
    n_rows = len(result.predictions)
    for name in wanted:
        if name == PREDICT:
            datatype = _label_datatype(result.predictions)
            predictions = result.predictions
            tensors.append(
                {"name": PREDICT, "shape": [n_rows], "datatype": datatype, "data": predictions}
            )
        else:
            width = len(output.classes or [])
            flat: Any
            if result.matrix is not None:
                flat = np.ascontiguousarray(result.matrix, dtype=np.float64).ravel()
            else:
                labels = [str(c) for c in output.classes or []]
                flat = [row[label] for row in result.probabilities or [] for label in labels]
            tensors.append(
                {
                    "name": PREDICT_PROBA,
                    "shape": [n_rows, width],
                    "datatype": "FP64",
                    "data": flat,
                }
            )
    return tensors


def response_parameters(warnings: list[dict[str, Any]] | None, runtime: str) -> dict[str, Any]:
    """The response's ``parameters``: ``runtime``, what answered (as v1's ``runtime``), and
    ``warnings`` when some value lay outside the training range (the v1 ``warnings``, rows
    counted from 0)."""
    parameters: dict[str, Any] = {"runtime": runtime}
    if warnings is not None:
        parameters["warnings"] = warnings
    return parameters
