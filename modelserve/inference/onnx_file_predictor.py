"""A registered ONNX file behind the ``Predictor`` contract.

Inputs are read from the graph: one ``[N, F]`` tensor (the schema's features in order, F of
them), or one input per feature named after it (``[N]`` or ``[N, 1]``). Outputs: a classifier
gives a label tensor and probabilities (an ``[N, K]`` tensor, or ZipMap's list of maps), a
regressor one value tensor. Call ``predict`` only from worker threads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelserve.core.errors import InvalidArtifact
from modelserve.inference.predictor import PredictionResult, Predictor, _refuse_non_finite
from modelserve.inference.validation import ValidatedBatch
from modelserve.registry.formats.onnx_file import OnnxFile
from modelserve.registry.schemas import InputSchema, OutputSpec

_NUMPY_TYPES: dict[str, Any] = {
    "tensor(double)": np.float64,
    "tensor(float)": np.float32,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}


def onnx_output(model: OnnxFile) -> OutputSpec:
    """Classification when the graph gives a label and probabilities (or declares classes),
    else regression."""
    kinds = [kind for _, kind in model.outputs]
    probabilities = len(kinds) >= 2 and (kinds[1].startswith("seq(map") or "float" in kinds[1])
    if model.classes is not None or probabilities:
        classes = model.classes
        if classes is None:
            raise InvalidArtifact(
                "The ONNX classifier does not declare its class labels (no ZipMap or "
                "classifier operator with classlabels_*)."
            )
        return OutputSpec(task="classification", classes=classes, probabilities=probabilities)
    return OutputSpec(task="regression")


class OnnxFilePredictor(Predictor):
    """Runs a registered ONNX file; answers exactly as ``Predictor`` formats them."""

    def __init__(self, model: OnnxFile, schema: InputSchema, output: OutputSpec) -> None:
        super().__init__(model, schema, output)
        self.model = model
        self.needs_frame = False
        self.with_proba = output.task == "classification" and output.probabilities
        self._feeds = self._plan(model, schema)
        self._classes: dict[Any, Any] = {c: c for c in output.classes or []}

    @staticmethod
    def _plan(model: OnnxFile, schema: InputSchema) -> list[tuple[str, Any, list[str], int]]:
        """(input name, numpy type, features it takes, rank) for each graph input."""
        plan = []
        names = schema.names
        inputs = model.inputs
        if len(inputs) == 1 and len(inputs[0][2]) == 2 and inputs[0][0] not in names:
            name, kind, shape = inputs[0]
            width = shape[1]
            if isinstance(width, int) and width != len(names):
                raise InvalidArtifact(
                    f"The ONNX input {name!r} takes {width} features; the schema has {len(names)}.",
                )
            return [(name, _dtype(name, kind), names, 2)]
        missing = sorted(set(names) - {i[0] for i in inputs})
        extra = sorted({i[0] for i in inputs} - set(names))
        if missing or extra:
            raise InvalidArtifact(
                "The ONNX inputs and the schema's features differ: give one [N, F] input or "
                "one input per feature, named after it.",
                details={"schema_only": missing, "onnx_only": extra},
            )
        for name, kind, shape in inputs:
            plan.append((name, _dtype(name, kind), [name], max(len(shape), 1)))
        return plan

    def model_input(self, batch: ValidatedBatch) -> dict[str, np.ndarray[Any, Any]]:
        """The tensors handed to ONNX Runtime, by input name."""
        feeds = {}
        for name, dtype, features, rank in self._feeds:
            if rank == 2 and len(features) > 1:
                array = np.column_stack([batch.columns[f] for f in features])
            else:
                array = np.asarray(batch.columns[features[0]])
                array = array.reshape(-1, 1) if rank == 2 else array
            feeds[name] = array.astype(dtype, copy=False)
        return feeds

    def predict(self, batch: ValidatedBatch) -> PredictionResult:
        """Labels and probabilities (classifiers) or values (regression) for every row."""
        outputs = self.model.predict(self.model_input(batch))
        matrix = None
        if self.output.task == "classification":
            raw = np.asarray(outputs[0]).ravel()
            predictions = [self._classes.get(v, v) for v in raw.tolist()]
            if self.with_proba:
                matrix = self._probabilities(outputs[1])
        else:
            raw = np.asarray(outputs[0], dtype=np.float64)
            if raw.ndim == 2 and raw.shape[-1] == 1:
                raw = raw.ravel()
            predictions = raw.tolist()
        _refuse_non_finite(raw if raw.dtype.kind == "f" else np.zeros(len(raw)), matrix)
        probabilities = None
        if matrix is not None:
            probabilities = [dict(zip(self.labels, row, strict=True)) for row in matrix.tolist()]
        return PredictionResult(predictions=predictions, probabilities=probabilities)

    def _probabilities(self, value: Any) -> np.ndarray[Any, Any]:
        if isinstance(value, list):  # ZipMap: one {label: p} per row
            classes = self.output.classes or []
            return np.array([[row[c] for c in classes] for row in value], dtype=np.float64)
        return np.asarray(value, dtype=np.float64)


def _dtype(name: str, kind: str) -> Any:
    if kind not in _NUMPY_TYPES:
        raise InvalidArtifact(f"The ONNX input {name!r} has type {kind}, which is not supported.")
    return _NUMPY_TYPES[kind]
