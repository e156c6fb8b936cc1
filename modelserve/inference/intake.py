"""Where a request's values become a validated matrix, for every transport.

Every transport hands the inference service a v1 payload: the records form
(``{"instances": [...]}``), or the columnar form (``{"columns": [...], "data": [[...], ...]}``),
which is also what V2 tensors are decoded into (``protocols/v2/codec.py``). ``validate`` turns it
into a ``ValidatedBatch``.

For a schema of numbers and integers only, it first tries to take the whole payload in a few
numpy operations: the rows stacked into one float64 matrix in schema order (no per-value Python
code), then every feature's rules checked on the matrix at once (finite, integral where the
feature is an integer, inside its minimum and maximum and its observed training range, whose
breaches the validator reports as warnings). A payload that passes is accepted as that matrix.
Anything else, and any payload with a problem, goes to ``CompiledValidator``, which checks
value by value and names every problem; the matrix it would have built holds the same
values (``tests/inference/test_intake.py`` checks this bit for bit), so which route a payload
takes never changes an answer or an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from modelserve.inference.validation import CompiledValidator, ValidatedBatch
from modelserve.predictions.inputs import FLAT, FLOAT64, float64_data
from modelserve.registry.schemas import FeatureType, InputSchema

_NUMBER_TYPES = frozenset({int, float})
_LOG_INT_LIMIT = float(2**63)
"""Integers at least this large are logged through ``loggable`` (see ``Column``)."""


class MatrixRules:
    """A numeric schema's rules as vectors over the columns of a matrix."""

    def __init__(self, schema: InputSchema) -> None:
        features = schema.features
        self.names = schema.names
        self.width = len(features)
        self.row_of = itemgetter(*self.names) if self.names else None
        minimum = np.array(
            [-np.inf if f.minimum is None else f.minimum for f in features], dtype=np.float64
        )
        maximum = np.array(
            [np.inf if f.maximum is None else f.maximum for f in features], dtype=np.float64
        )
        # A value outside the observed training range is served with a warning, which only the
        # validator writes: the matrix takes the narrower of the hard and the training bounds.
        soft = [f.soft_range or (-np.inf, np.inf) for f in features]
        minimum = np.maximum(minimum, np.array([low for low, _ in soft], np.float64))
        maximum = np.minimum(maximum, np.array([high for _, high in soft], np.float64))
        # Bounds no lower than -max and no higher than +max float: a value is then finite and in
        # bounds exactly when it is between them (NaN and infinities compare outside), one
        # vectorised comparison for both rules (half the time of three separate reductions).
        largest = np.finfo(np.float64).max
        self.low = np.maximum(minimum, -largest)
        self.high = np.minimum(maximum, largest)
        self.integers = np.array(
            [i for i, f in enumerate(features) if f.type is FeatureType.INTEGER], dtype=np.intp
        )

    def accept(self, rows: list[Any], types: set[type]) -> np.ndarray[Any, Any] | None:
        """The float64 matrix of ``rows`` (lists in schema order, values of ``types``) if every
        value keeps every rule; None when any may not (the validator then says which)."""
        if not types <= _NUMBER_TYPES:
            return None  # booleans, strings, nulls, nested arrays: value by value
        try:
            matrix = np.array(rows, dtype=np.float64)
        except (OverflowError, TypeError, ValueError):
            return None
        if matrix.shape != (len(rows), self.width):
            return None
        if not self.keeps(matrix, integral=float not in types):
            return None
        if int in types:
            large = np.flatnonzero((np.abs(matrix) >= _LOG_INT_LIMIT).any(axis=0)).tolist()
            if any(type(row[j]) is int for j in large for row in rows):
                return None  # an integer logged through ``loggable``: the validator's case
        return matrix

    def in_order(
        self, names: list[str], matrix: np.ndarray[Any, Any]
    ) -> np.ndarray[Any, Any] | None:
        """``matrix``, whose columns are ``names``, with its columns in schema order; None
        unless ``names`` are the schema's features, each once."""
        if len(names) != self.width or set(names) != set(self.names):
            return None
        column = {name: i for i, name in enumerate(names)}
        return np.ascontiguousarray(matrix[:, [column[name] for name in self.names]])

    def batch(self, matrix: np.ndarray[Any, Any]) -> ValidatedBatch:
        """The batch of a matrix that keeps the rules: it, plus a view of it per feature."""
        columns = dict(zip(self.names, matrix.T, strict=True))  # half the dict comprehension
        return ValidatedBatch(columns=columns, n_rows=len(matrix), log_safe=True, matrix=matrix)

    def keeps(self, matrix: np.ndarray[Any, Any], *, integral: bool = False) -> bool:
        """Whether every value of ``matrix`` (float64, rows x width, schema order) keeps every
        rule; ``integral``: its values are known to be integers already."""
        if not ((matrix >= self.low) & (matrix <= self.high)).all():
            return False  # comparing NaN warns of nothing: no errstate needed
        if len(self.integers) and not integral:
            part = matrix[:, self.integers]  # finite by now
            if (part != np.floor(part)).any():
                return False
        return True


@dataclass(frozen=True)
class MatrixPayload:
    """A payload whose values arrived as one float64 matrix (a v1 columnar body or a V2 float
    tensor read by ``body_matrix``, or binary FP64, FP32 or FP16 data): the columnar payload
    ``{"columns": names, "data": rows}`` it stands for, without a Python object per value."""

    names: list[str]
    matrix: np.ndarray[Any, Any]
    original: Callable[[], Any] | None = field(default=None, compare=False)
    """The payload as the general path reads it from the body (integers as integers), for a
    matrix read from JSON text: what the validator checks, and the log keeps, when the matrix
    does not keep the rules."""
    data_text: bytes | None = field(default=None, compare=False)
    """The data's JSON text as the client spelled it (``body_matrix``), for ``logged``: its
    rows, or, when ``flat``, its values row after row."""
    flat: bool = field(default=False, compare=False)
    """Whether ``data_text`` holds the values row after row (a V2 tensor's flat data)."""
    binary: bool = field(default=False, compare=False)
    """Whether the values arrived as binary numbers (the V2 binary extension), not as text."""

    @property
    def n_rows(self) -> int:
        """How many rows it holds."""
        return int(self.matrix.shape[0])

    def columnar(self) -> Any:
        """The columnar payload of the same values (for the validator, and for the log when the
        matrix did not keep the rules)."""
        if self.original is not None:
            return self.original()
        return {"columns": list(self.names), "data": self.matrix.tolist()}

    def logged(self) -> tuple[orjson.Fragment, str | None]:
        """What the log keeps of a checked payload, and its ``inputs_encoding``
        (``predictions.inputs``): the JSON of ``columnar()`` with the data's own text when it
        was read from JSON (flat data as it came, ``flat``), binary values as their base64,
        else the matrix spelled by orjson (the same values)."""
        encoding: str | None
        if self.binary:
            data, encoding = float64_data(self.matrix), FLOAT64
        elif self.data_text is not None:
            data, encoding = self.data_text, FLAT if self.flat else None
        else:
            data, encoding = orjson.dumps(self.matrix, option=orjson.OPT_SERIALIZE_NUMPY), None
        head = b'{"columns":' + orjson.dumps(self.names) + b',"data":'
        return orjson.Fragment(head + data + b"}"), encoding


def numeric_rules(schema: InputSchema) -> MatrixRules | None:
    """Matrix rules for a schema of numbers and integers only (their names free of NUL
    characters, which the log escapes); None otherwise."""
    if not schema.features or any("\x00" in name for name in schema.names):
        return None
    for feature in schema.features:
        if feature.type not in (FeatureType.NUMBER, FeatureType.INTEGER):
            return None
    return MatrixRules(schema)


def _columnar_rows(rules: MatrixRules, payload: dict[str, Any]) -> list[Any] | None:
    columns, data = payload.get("columns"), payload.get("data")
    if len(payload) != 2 or type(columns) is not list or type(data) is not list or not data:
        return None
    if columns == rules.names:
        return data
    return _reordered(rules, columns, data)


def _reordered(rules: MatrixRules, columns: list[Any], data: list[Any]) -> list[Any] | None:
    """Rows of a columnar body whose header names the schema's features in another order."""
    if len(columns) != rules.width or not all(type(c) is str for c in columns):
        return None
    if set(columns) != set(rules.names):
        return None
    if not all(type(row) is list and len(row) == rules.width for row in data):
        return None
    order = itemgetter(*[columns.index(name) for name in rules.names])
    return [list(order(row)) for row in data]


def _records_rows(rules: MatrixRules, instances: Any) -> list[Any] | None:
    if type(instances) is not list or not instances or rules.row_of is None:
        return None
    width = rules.width
    if not all(type(i) is dict and len(i) == width for i in instances):
        return None
    try:
        rows = list(map(rules.row_of, instances))
    except KeyError:
        return None
    return rows if width > 1 else [[value] for value in rows]


def fast_batch(
    rules: MatrixRules, validator: CompiledValidator, payload: Any
) -> ValidatedBatch | None:
    """The batch of a well-formed payload whose values all keep the rules; else None."""
    if type(payload) is not dict:
        return None
    if "instances" in payload:
        if len(payload) != 1:
            return None
        rows = _records_rows(rules, payload["instances"])
    else:
        rows = _columnar_rows(rules, payload)
    if rows is None or len(rows) > validator.max_rows:
        return None
    if not all(type(row) is list or type(row) is tuple for row in rows):
        return None
    if any(len(row) != rules.width for row in rows):
        return None
    types = set(map(type, chain.from_iterable(rows)))
    matrix = rules.accept(rows, types)
    return None if matrix is None else rules.batch(matrix)


def validate(
    validator: CompiledValidator, payload: Any, rules: MatrixRules | None = None
) -> ValidatedBatch:
    """The validated batch of a v1 payload (or a ``MatrixPayload``); ValidationFailed naming
    every problem otherwise."""
    if isinstance(payload, MatrixPayload):
        return _matrix_batch(rules, validator, payload)
    if rules is not None:
        batch = fast_batch(rules, validator, payload)
        if batch is not None:
            return batch
    return validator.validate(payload)


def _matrix_batch(
    rules: MatrixRules | None, validator: CompiledValidator, payload: MatrixPayload
) -> ValidatedBatch:
    matrix: np.ndarray[Any, Any] | None = payload.matrix
    if (
        rules is not None
        and payload.matrix.ndim == 2
        and payload.matrix.shape[1] == rules.width
        and 0 < payload.n_rows <= validator.max_rows
    ):
        if payload.names != rules.names:
            matrix = rules.in_order(payload.names, payload.matrix)
        if matrix is not None and rules.keeps(matrix):
            return rules.batch(matrix)
    return validator.validate(payload.columnar())
