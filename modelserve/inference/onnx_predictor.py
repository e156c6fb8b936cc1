"""Run a version's verified ONNX twin on ONNX Runtime, with the same contract as ``Predictor``.

The twin is made at registration (``registry/onnx.py``); its metadata says how it takes its
inputs (one tensor per feature, or one matrix) and whether regression outputs are flat. Inputs
are fed straight from the validated columns as numpy arrays (no pandas). Call ``predict`` only
from worker threads; one ``InferenceSession`` serves concurrent calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from modelserve.inference.predictor import PredictionResult, _refuse_non_finite
from modelserve.inference.probabilities import ProbabilityRows
from modelserve.inference.validation import ValidatedBatch
from modelserve.registry.schemas import InputSchema, OutputSpec

if TYPE_CHECKING:
    import onnxruntime

Layout = Literal["columns", "matrix"]
"""How a twin takes its inputs: one ``[N, 1]`` tensor per feature (named after it, as for a
pipeline fitted on a DataFrame) or one ``[N, n_features]`` matrix in schema order."""

LAYOUT_KEY = "modelserve.layout"
FLAT_OUTPUT_KEY = "modelserve.flat_output"
"""Model metadata: "true" when scikit-learn returns a 1-D regression output."""
MISSING_CATEGORY = "\x00modelserve:missing"
"""What a null (None or NaN) category is fed to ONNX as (string tensors hold no None); the twin's
imputers treat it as missing. A schema that allows this very string as a category gets no twin."""

_NUMPY_TYPES: dict[str, Any] = {
    "tensor(double)": np.float64,
    "tensor(float)": np.float32,
    "tensor(int64)": np.int64,
    "tensor(string)": object,
}


def open_session(content: bytes) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session for a twin, on the CPU with one thread per call.

    The server already runs up to ``INFERENCE_THREADS`` predictions at once (and on a small
    machine has few cores); ONNX Runtime's default intra-op pool would start a thread per core
    for every session and have them spin, oversubscribing the CPU under concurrent requests.
    Tabular models are small enough that one thread per call is fastest; throughput comes from
    running requests in parallel, which ``InferenceSession.run`` allows.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: the converter's graphs trigger benign warnings
    return onnxruntime.InferenceSession(
        content, sess_options=options, providers=["CPUExecutionProvider"]
    )


class OnnxPredictor:
    """Runs one version's ONNX twin; answers exactly as ``Predictor`` formats them."""

    def __init__(
        self, session: onnxruntime.InferenceSession, schema: InputSchema, output: OutputSpec
    ) -> None:
        self.session = session
        self.schema = schema
        self.output = output
        meta = session.get_modelmeta().custom_metadata_map
        layout = meta.get(LAYOUT_KEY)
        if layout not in ("columns", "matrix"):
            raise ValueError(f"not a modelserve ONNX twin (layout {layout!r})")
        self.layout: Layout = "columns" if layout == "columns" else "matrix"
        self.flat_output = meta.get(FLAT_OUTPUT_KEY) == "true"
        self._inputs = [(i.name, _NUMPY_TYPES[i.type]) for i in session.get_inputs()]
        self._outputs = [o.name for o in session.get_outputs()]
        self.with_proba = output.task == "classification" and output.probabilities
        self.labels = [str(label) for label in output.classes or []]
        # ONNX gives labels in its own types (a boolean class comes back as 0/1, a float class
        # as an integer); looking them up returns the model's own label, as scikit-learn does.
        self._classes: dict[Any, Any] = {label: label for label in output.classes or []}
        # Integer or string classes come back as themselves: the lookup would change nothing.
        kinds = {type(label) for label in output.classes or []}
        self._plain_kind = "iu" if kinds == {int} else "OU" if kinds == {str} else ""

    def model_input(self, batch: ValidatedBatch) -> dict[str, np.ndarray[Any, Any]]:
        """The tensors handed to ONNX Runtime, by input name."""
        if self.layout == "matrix":
            name, dtype = self._inputs[0]
            matrix = batch.matrix
            if matrix is None:
                matrix = np.column_stack([batch.columns[n] for n in self.schema.names])
            return {name: matrix.astype(dtype, copy=False)}
        feeds: dict[str, np.ndarray[Any, Any]] = {}
        for name, dtype in self._inputs:
            column = batch.columns[name]
            if dtype is object:
                values = [v if isinstance(v, str) else MISSING_CATEGORY for v in column.tolist()]
                column = np.array(values, dtype=object)
            feeds[name] = column.astype(dtype, copy=False).reshape(-1, 1)
        return feeds

    def predict(self, batch: ValidatedBatch) -> PredictionResult:
        """Predict labels (and probabilities for classifiers) for every row."""
        outputs = self.session.run(self._outputs, self.model_input(batch))
        matrix = None
        if self.output.task == "classification":
            raw = np.asarray(outputs[0]).ravel()
            predictions = raw.tolist()
            if raw.dtype.kind not in self._plain_kind:
                predictions = [self._classes.get(v, v) for v in predictions]
            if self.with_proba:
                matrix = np.asarray(outputs[1], dtype=np.float64)
        else:
            raw = np.asarray(outputs[0], dtype=np.float64)
            if self.flat_output:
                raw = raw.ravel()
            predictions = raw.tolist()
        _refuse_non_finite(raw, matrix)
        probabilities = None if matrix is None else ProbabilityRows(self.labels, matrix)
        return PredictionResult(predictions=predictions, probabilities=probabilities, matrix=matrix)
