"""ONNX twins: at registration, a model skl2onnx can convert gets an ONNX copy, kept only if it
answers like scikit-learn on a sample.

The twin takes the same validated columns the scikit-learn path does: one ``[N, 1]`` tensor per
feature when the model is fed a DataFrame (fitted on one, or the schema has categories), else one
``[N, n_features]`` matrix. Double precision is tried first (most converters support it and the
1e-5 tolerance is tight), then single precision. A twin is kept only if, on ``SAMPLE_ROWS`` rows
inside the schema (the registration probe rows, random values within the bounds, every category,
nulls where allowed), its labels equal scikit-learn's and its probabilities (or regression values)
are within ``TOLERANCE``. This is a check on a sample, not a proof: a tree split sitting between
two sample values could still disagree, which is why ONNX serving is opt-in per model.

Anything that goes wrong (an unsupported estimator, a converter error, a mismatch) means no twin,
with the reason logged; registration never fails because of it.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.pipeline import Pipeline

from modelserve.core.errors import ValidationFailed
from modelserve.inference.native import make_predictor
from modelserve.inference.onnx_predictor import (
    FLAT_OUTPUT_KEY,
    LAYOUT_KEY,
    MISSING_CATEGORY,
    Layout,
    OnnxPredictor,
    open_session,
)
from modelserve.inference.predictor import PredictionResult
from modelserve.inference.validation import CompiledValidator, ValidatedBatch
from modelserve.registry.formats.twins import convertible, twin_unavailable
from modelserve.registry.probe import sample_instances
from modelserve.registry.schemas import FeatureType, InputSchema, OutputSpec

logger = logging.getLogger(__name__)

TOLERANCE = 1e-5
"""Largest difference from scikit-learn's probabilities or regression values a twin may show."""
SAMPLE_ROWS = 200
"""Rows the twin is checked on."""
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
"""ONNX opsets the twins use (ai.onnx.ml 3 holds double-precision tree ensembles)."""

Precision = Literal["double", "float"]
PRECISIONS: tuple[Precision, ...] = ("double", "float")
"""Tried in this order. ONNX Runtime's tree ensembles only compute in single precision (as
scikit-learn's trees compare features), so tree models get single-precision twins."""


@dataclass(frozen=True)
class Twin:
    """A verified ONNX conversion of a version."""

    content: bytes
    sha256: str
    max_abs_diff: float
    """Largest difference from scikit-learn on the verification sample."""
    precision: Precision


@dataclass(frozen=True)
class TwinAttempt:
    """The outcome of trying to make a twin: one, or why there is none."""

    twin: Twin | None
    reason: str | None
    seconds: float


class _Mismatch(Exception):
    """The twin does not answer like scikit-learn."""


def make_twin(estimator: Any, schema: InputSchema, output: OutputSpec) -> Twin | None:
    """A verified ONNX twin of ``estimator``, or None (the reason is logged)."""
    return attempt_twin(estimator, schema, output).twin


def attempt_twin(estimator: Any, schema: InputSchema, output: OutputSpec) -> TwinAttempt:
    """Convert ``estimator`` (each input layout it may take; double precision, else single)
    and verify it; never raises."""
    started = time.perf_counter()
    reasons: dict[str, None] = {}  # in order, without repeats
    unconvertible = twin_unavailable(estimator)  # registers onnxmltools' converters if needed
    if unconvertible:
        return _none(unconvertible, started)
    try:
        sample, expected = _reference(estimator, schema, output)
    except Exception as exc:  # the model itself cannot answer the sample: nothing to match
        reason = f"scikit-learn fails on the verification sample: {_describe(exc)}"
        return _none(reason, started)
    for layout in _layouts(estimator, schema):
        for precision in PRECISIONS:
            try:
                twin = _twin(
                    estimator, schema, output, layout, precision, sample=sample, expected=expected
                )
            except Exception as exc:  # anything a converter or ONNX Runtime raises: no twin
                reasons[f"{precision}: {_describe(exc)}"] = None
                continue
            seconds = time.perf_counter() - started
            logger.info(
                "ONNX twin kept (%s inputs, %s precision, max |diff| %.3g, %.2fs)",
                layout,
                precision,
                twin.max_abs_diff,
                seconds,
            )
            return TwinAttempt(twin=twin, reason=None, seconds=seconds)
    return _none("; ".join(reasons), started)


def _none(reason: str, started: float) -> TwinAttempt:
    seconds = time.perf_counter() - started
    logger.info("no ONNX twin (%.2fs): %s", seconds, reason)
    return TwinAttempt(twin=None, reason=reason, seconds=seconds)


def _describe(exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}"[:300]


def _reference(
    estimator: Any, schema: InputSchema, output: OutputSpec
) -> tuple[ValidatedBatch, PredictionResult]:
    """The verification sample and scikit-learn's answers, exactly as the server gives them.

    Rows the model answers with non-finite outputs (the server refuses them) are left out."""
    instances = sample_instances(schema, SAMPLE_ROWS)
    validator = CompiledValidator(schema, max_rows=len(instances))
    predictor = make_predictor(estimator, schema, output)
    batch = validator.validate({"instances": instances})
    try:
        return batch, predictor.predict(batch)
    except ValidationFailed as exc:
        refused = {p.get("row") for p in exc.details or [] if isinstance(p, dict)}
        kept = [row for i, row in enumerate(instances) if i not in refused]
        if len(kept) < len(instances) // 2:
            raise
    batch = validator.validate({"instances": kept})
    return batch, predictor.predict(batch)


def _twin(
    estimator: Any,
    schema: InputSchema,
    output: OutputSpec,
    layout: Layout,
    precision: Precision,
    *,
    sample: ValidatedBatch,
    expected: PredictionResult,
) -> Twin:
    flat = bool(expected.predictions) and not isinstance(expected.predictions[0], list)
    content = _convert(estimator, schema, output, layout, precision, flat_output=flat)
    actual = OnnxPredictor(open_session(content), schema, output).predict(sample)
    diff = _max_abs_diff(expected, actual, output)
    return Twin(
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        max_abs_diff=diff,
        precision=precision,
    )


def _max_abs_diff(
    expected: PredictionResult, actual: PredictionResult, output: OutputSpec
) -> float:
    """The largest probability (or regression) difference; _Mismatch when labels differ or it
    exceeds the tolerance."""
    if output.task == "classification":
        differing = sum(
            a != b for a, b in zip(expected.predictions, actual.predictions, strict=True)
        )
        if differing:
            raise _Mismatch(f"labels differ on {differing} of {len(expected.predictions)} rows")
        if expected.probabilities is None or actual.probabilities is None:
            return 0.0
        labels = list(expected.probabilities[0]) if expected.probabilities else []
        want = np.array([[row[label] for label in labels] for row in expected.probabilities])
        got = np.array([[row[label] for label in labels] for row in actual.probabilities])
    else:
        want = np.asarray(expected.predictions, dtype=np.float64)
        got = np.asarray(actual.predictions, dtype=np.float64)
    if want.shape != got.shape:
        raise _Mismatch(f"output shape {got.shape} instead of {want.shape}")
    diff = float(np.max(np.abs(want - got), initial=0.0))
    if not diff <= TOLERANCE:
        raise _Mismatch(f"max |difference| {diff:.3g} exceeds {TOLERANCE:g}")
    return diff


def _layouts(estimator: Any, schema: InputSchema) -> list[Layout]:
    """The input layouts to try. A model the server feeds a DataFrame (as ``Predictor``
    decides) may select columns by name, so it gets one input per feature; if it has no
    categories, a matrix in schema order is the same data (an estimator fitted on a frame
    without a ColumnTransformer converts only that way)."""
    if any(f.type is FeatureType.CATEGORY for f in schema.features):
        return ["columns"]
    if hasattr(estimator, "feature_names_in_"):
        return ["columns", "matrix"]
    return ["matrix"]


def _convert(
    estimator: Any,
    schema: InputSchema,
    output: OutputSpec,
    layout: Layout,
    precision: Precision,
    *,
    flat_output: bool,
) -> bytes:
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    if any(MISSING_CATEGORY in (f.categories or []) for f in schema.features):
        raise ValueError("a category equals the placeholder for missing categories")
    estimator = convertible(estimator)  # registry/formats/twins.py
    tensor = DoubleTensorType if precision == "double" else FloatTensorType
    initial: list[tuple[str, Any]]
    if layout == "columns":
        initial = [
            (
                f.name,
                StringTensorType([None, 1])
                if f.type is FeatureType.CATEGORY
                else tensor([None, 1]),
            )
            for f in schema.features
        ]
    else:
        initial = [("X", tensor([None, len(schema.features)]))]
    options = None
    if output.probabilities:
        final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
        # Probabilities as one [N, n_classes] tensor rather than a list of maps.
        options = {id(final): {"zipmap": False}}
    model = convert_sklearn(
        estimator,
        initial_types=initial,
        options=options,
        target_opset=TARGET_OPSET,
        custom_conversion_functions=_custom_converters(),
    )
    onnx.helper.set_model_props(
        model, {LAYOUT_KEY: layout, FLAT_OUTPUT_KEY: "true" if flat_output else "false"}
    )
    content: bytes = model.SerializeToString()
    return content


Converter = Callable[[Any, Any, Any], None]


def _custom_converters() -> dict[type, Converter]:
    """skl2onnx converters adapted to the models this server trains and to current libraries.

    * ``SimpleImputer`` on strings with a NaN/None ``missing_values`` (training imputes missing
      categories that way): missing is ``MISSING_CATEGORY``, as ``OnnxPredictor`` feeds it.
    * ``SimpleImputer`` on doubles: ONNX Runtime's Imputer takes floats only, so NaN is replaced
      with ``Where(IsNaN(x), statistics, x)`` in double precision.
    * Histogram gradient boosting: its converter passes booleans where ONNX attributes hold
      integers, which protobuf 7 refuses; they are passed as integers.
    """
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer

    def original(model_type: type) -> Converter:
        converter: Converter = get_converter(sklearn_operator_name_map[model_type])
        return converter

    return {
        SimpleImputer: _imputer(original(SimpleImputer)),
        HistGradientBoostingClassifier: _integer_attributes(
            original(HistGradientBoostingClassifier)
        ),
        HistGradientBoostingRegressor: _integer_attributes(original(HistGradientBoostingRegressor)),
    }


def _imputer(convert: Converter) -> Converter:
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    def converter(scope: Any, operator: Any, container: Any) -> None:
        imputer = operator.raw_operator
        kind = operator.inputs[0].type
        if isinstance(kind, StringTensorType) and not isinstance(imputer.missing_values, str):
            proxy = copy.copy(imputer)
            proxy.missing_values = MISSING_CATEGORY
            operator.raw_operator = proxy
            try:
                convert(scope, operator, container)
            finally:
                operator.raw_operator = imputer
            return
        if isinstance(kind, DoubleTensorType) and _is_nan(imputer.missing_values):
            _double_nan_imputer(scope, operator, container)
            return
        convert(scope, operator, container)

    return converter


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and bool(np.isnan(value))


def _double_nan_imputer(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.common._apply_operation import apply_concat
    from skl2onnx.proto import onnx_proto

    imputer = operator.raw_operator
    statistics = np.asarray(imputer.statistics_, dtype=np.float64)
    if np.isnan(statistics).any():  # scikit-learn drops these features; this converter cannot
        raise NotImplementedError("an imputer with all-missing features")
    inputs = [v.full_name for v in operator.inputs]
    joined = inputs[0]
    if len(inputs) > 1:
        joined = scope.get_unique_variable_name("imputer_input")
        apply_concat(scope, inputs, joined, container, axis=1)
    fill = scope.get_unique_variable_name("imputer_fill")
    container.add_initializer(
        fill, onnx_proto.TensorProto.DOUBLE, [1, len(statistics)], statistics.tolist()
    )
    missing = scope.get_unique_variable_name("imputer_missing")
    container.add_node("IsNaN", [joined], [missing], name=scope.get_unique_operator_name("IsNaN"))
    filled = operator.outputs[0].full_name
    container.add_node(
        "Where", [missing, fill, joined], [filled], name=scope.get_unique_operator_name("Where")
    )


def _integer_attributes(convert: Converter) -> Converter:
    def converter(scope: Any, operator: Any, container: Any) -> None:
        convert(scope, operator, _IntegerAttributes(container))

    return converter


class _IntegerAttributes:
    """A converter container that turns booleans in list attributes into integers."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, *args: Any, **attributes: Any) -> Any:
        fixed = {
            key: [int(v) if isinstance(v, bool | np.bool_) else v for v in value]
            if isinstance(value, list)
            else value
            for key, value in attributes.items()
        }
        return self._container.add_node(*args, **fixed)
