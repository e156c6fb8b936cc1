"""Translate V2 input tensors to the payload the inference service validates (results go back
as tensors in ``outputs.py``).

Two input layouts are accepted: one input per feature (named after it, shape ``[N]`` or
``[N, 1]``), or a single 2-D tensor ``[N, n_features]`` in schema order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from modelserve.core.errors import BadRequest
from modelserve.inference.intake import MatrixPayload, numeric_rules
from modelserve.protocols.v2.schemas import InferenceRequest, TensorInput
from modelserve.registry.schemas import FeatureType, InputSchema

_INT_RANGES = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _check_value(tensor: TensorInput, value: Any) -> Any:
    kind = tensor.datatype
    if kind == "BOOL":
        ok = isinstance(value, bool)
    elif kind == "BYTES":
        ok = isinstance(value, str)
    elif kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        ok = type(value) is int and low <= value <= high
    else:
        ok = type(value) in (int, float) or (value is None)
    if not ok:
        raise BadRequest(f"Input {tensor.name!r}: {value!r} is not valid {kind} data.")
    return value


def _nested_like(data: list[Any], shape: list[int]) -> bool:
    """Whether nested ``data`` has exactly ``shape``: a list of shape[0] items at each level."""
    if len(data) != shape[0]:
        return False
    if len(shape) == 1:
        return not any(isinstance(item, list) for item in data)
    return all(isinstance(item, list) and _nested_like(item, shape[1:]) for item in data)


def tensor_values(tensor: TensorInput) -> list[Any]:
    """The tensor's data, flat in row-major order, checked against its shape and datatype.
    ``data`` is flat, or nested exactly as the shape says (a ragged nesting is refused even
    when its count matches)."""
    data = tensor.values()
    values = _flatten(data)
    nested = any(isinstance(item, list) for item in data)
    if (
        any(d < 0 for d in tensor.shape)
        or math.prod(tensor.shape) != len(values)
        or (nested and not _nested_like(data, tensor.shape))
    ):
        raise BadRequest(
            f"Input {tensor.name!r}: shape {tensor.shape} does not match its data "
            f"({len(values)} values{', nested differently' if nested else ''})."
        )
    return [_check_value(tensor, v) for v in values]


def _as_feature(value: Any, feature_type: FeatureType) -> Any:
    # A numeric tensor carries booleans as 0/1; anything else is left for validation to refuse.
    if feature_type is FeatureType.BOOLEAN and type(value) in (int, float) and value in (0, 1):
        return bool(value)
    return value


_FLOAT_TYPES = frozenset({int, float, type(None)})


def _plain_values(kind: str, values: list[Any]) -> bool:
    """Whether every value is valid ``kind`` data, checked without a Python loop per value (a
    False only sends the tensor to ``tensor_values``, which names the bad value)."""
    types = set(map(type, values))
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        return types == {int} and low <= min(values) and max(values) <= high
    if kind == "BOOL":
        return types == {bool}
    if kind == "BYTES":
        return types == {str}
    return types <= _FLOAT_TYPES


def _nested_rows(data: list[Any], rows: int, width: int) -> bool:
    """Whether a 2-D tensor's ``data`` is nested as its rows: ``rows`` lists of ``width``."""
    return len(data) == rows and all(type(r) is list and len(r) == width for r in data)


def _tensor_rows(tensor: TensorInput) -> list[Any]:
    """A 2-D tensor's data as its rows (lists), checked as ``tensor_values`` checks it."""
    rows, width = tensor.shape
    data = tensor.values()
    if rows >= 0 and _nested_rows(data, rows, width):
        if _plain_values(tensor.datatype, list(chain.from_iterable(data))):
            return data
    elif width >= 0 and len(data) == rows * width and _plain_values(tensor.datatype, data):
        return [data[r * width : (r + 1) * width] for r in range(rows)]
    flat = tensor_values(tensor)  # raises what is wrong
    return [flat[r * width : (r + 1) * width] for r in range(rows)]


_FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})


def _float_matrix(tensor: TensorInput) -> np.ndarray[Any, Any] | None:
    """A 2-D float tensor's values as a float64 matrix, built by numpy: binary FP64, FP32 or
    FP16 data, or JSON data (flat, or nested as the shape says) of floats only, which the rows
    would hold as the very same values. None for anything else (ints, nulls, a shape that does
    not match), which goes the way of ``_tensor_rows``."""
    if tensor.datatype not in _FLOAT_DATATYPES:
        return None
    rows, width = tensor.shape
    if rows < 0 or width < 0:
        return None
    array = tensor.array
    if array is not None:
        if array.size != rows * width:
            return None
        return array.astype(np.float64).reshape(rows, width)
    return _json_float_matrix(tensor.data, rows, width)


def _json_float_matrix(data: list[Any], rows: int, width: int) -> np.ndarray[Any, Any] | None:
    """``_float_matrix`` of JSON data (``rows``, ``width``: the tensor's shape, not negative)."""
    if len(data) == rows * width:
        values = data
    elif _nested_rows(data, rows, width):
        values = list(chain.from_iterable(data))
    else:
        return None
    if set(map(type, values)) != {float}:
        return None
    return np.array(values, dtype=np.float64).reshape(rows, width)


def _float_column(tensor: TensorInput, data: list[Any]) -> np.ndarray[Any, Any] | None:
    """A feature tensor's values ([N] or [N, 1]) as float64, built by numpy, when they are
    binary floats or flat JSON ``data`` (the tensor's, or what it holds) of floats only (the
    values ``_column_values`` would give); None for anything else, which goes that way."""
    if tensor.datatype not in _FLOAT_DATATYPES or not 1 <= len(tensor.shape) <= 2:
        return None
    count = tensor.shape[0]
    if len(tensor.shape) == 2 and tensor.shape[1] != 1:
        return None
    array = tensor.array
    if array is not None:
        return array.astype(np.float64) if array.size == count else None
    if len(data) != count or set(map(type, data)) != {float}:
        return None
    return np.array(data, dtype=np.float64)


def _feature_matrix(
    inputs: list[TensorInput], names: list[str], datas: list[list[Any]] | None = None
) -> MatrixPayload | None:
    """For a numeric schema, one float input per feature (each once, in any order): their
    values as a matrix in the inputs' order, the columnar payload they stand for; else None.
    ``datas``: the inputs' JSON data, when they do not hold it themselves."""
    if len(inputs) != len(names) or {t.name for t in inputs} != set(names):
        return None
    columns: list[np.ndarray[Any, Any]] = []
    for index, tensor in enumerate(inputs):
        column = _float_column(tensor, tensor.data if datas is None else datas[index])
        if column is None or (columns and len(column) != len(columns[0])):
            return None
        columns.append(column)
    if not len(columns[0]):
        return None
    binary = all(t.array is not None for t in inputs)
    return MatrixPayload([t.name for t in inputs], np.column_stack(columns), binary=binary)


def _column_values(tensor: TensorInput) -> list[Any]:
    """A feature tensor's values ([N] or [N, 1]), checked as ``tensor_values`` checks them."""
    data = tensor.values()
    count = tensor.shape[0]
    if len(tensor.shape) == 1 and len(data) == count and _plain_values(tensor.datatype, data):
        return data
    return tensor_values(tensor)


@dataclass(frozen=True)
class _SchemaFacts:
    names: list[str]
    types: dict[str, FeatureType]
    booleans: bool
    numeric: bool


_FACTS: dict[int, tuple[InputSchema, _SchemaFacts]] = {}
_FACTS_KEPT = 1024


def _facts(schema: InputSchema) -> _SchemaFacts:
    """What ``to_payload`` asks of a schema, worked out once per schema object (a version's
    schema lives as long as its cached route): 6 µs of a one-row to_payload instead of 17."""
    known = _FACTS.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    types = {f.name: f.type for f in schema.features}
    facts = _SchemaFacts(
        names=schema.names,
        types=types,
        booleans=any(t is FeatureType.BOOLEAN for t in types.values()),
        numeric=numeric_rules(schema) is not None,
    )
    if len(_FACTS) >= _FACTS_KEPT:
        _FACTS.clear()
    _FACTS[id(schema)] = (schema, facts)  # the schema kept with it, so its id is not reused
    return facts


def to_payload(request: InferenceRequest, schema: InputSchema) -> dict[str, Any] | MatrixPayload:
    """The request's values as the columnar v1 payload the inference service validates
    (``{"columns": [...], "data": [[...], ...]}``; for one 2-D tensor of floats and a numeric
    schema, as the ``MatrixPayload`` standing for it), or, when the feature inputs do not name
    the schema's features exactly, as records (each row's own problems then reported)."""
    facts = _facts(schema)
    names, types, booleans = facts.names, facts.types, facts.booleans
    numeric = facts.numeric
    inputs = request.inputs
    tensor = _matrix_input(inputs, types)
    if tensor is not None:
        width = tensor.shape[1]
        if width != len(names):
            raise BadRequest(
                f"Input {tensor.name!r} has {width} columns; the model takes "
                f"{len(names)} features: {names}."
            )
        if numeric:
            matrix = _float_matrix(tensor)
            if matrix is not None:
                return MatrixPayload(list(names), matrix, binary=tensor.array is not None)
        data = _tensor_rows(tensor)
        if booleans:
            kinds = [types[n] for n in names]
            data = [[_as_feature(v, k) for v, k in zip(row, kinds, strict=True)] for row in data]
        return {"columns": list(names), "data": data}
    if numeric:
        by_feature = _feature_matrix(inputs, names)
        if by_feature is not None:
            return by_feature
    columns: dict[str, list[Any]] = {}
    for tensor in inputs:
        if tensor.name in columns:
            raise BadRequest(f"Input {tensor.name!r} is given more than once.")
        if len(tensor.shape) > 2 or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise BadRequest(f"Input {tensor.name!r}: a feature input has shape [N] or [N, 1].")
        values = _column_values(tensor)
        kind = types.get(tensor.name, FeatureType.NUMBER)
        if kind is FeatureType.BOOLEAN:
            values = [_as_feature(v, kind) for v in values]
        columns[tensor.name] = values
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise BadRequest("Feature inputs have different lengths.")
    n_rows = lengths.pop()
    if set(columns) == set(names) and n_rows:
        return {
            "columns": list(columns),
            "data": [list(row) for row in zip(*columns.values(), strict=True)],
        }
    return {"instances": [{n: v[row] for n, v in columns.items()} for row in range(n_rows)]}


def _matrix_input(inputs: list[TensorInput], types: dict[str, FeatureType]) -> TensorInput | None:
    """The one input when it is a 2-D tensor not named after a feature (the matrix layout)."""
    if len(inputs) == 1 and len(inputs[0].shape) == 2 and inputs[0].name not in types:
        return inputs[0]
    return None


def float_tensor_matrix(
    request: InferenceRequest, values: np.ndarray[Any, Any], schema: InputSchema
) -> tuple[list[str], np.ndarray[Any, Any]] | None:
    """The names and matrix of the ``MatrixPayload`` ``to_payload`` gives for ``request`` once
    its one input, a 2-D float tensor, holds ``values`` (float64, flat, row-major, not shared):
    the values as they are, with no copy; None when ``to_payload`` would give or raise anything
    else (the general path then says what)."""
    facts = _facts(schema)
    tensor = _matrix_input(request.inputs, facts.types)
    if not facts.numeric or tensor is None or not _fits_as_floats(tensor, facts):
        return None
    rows, width = tensor.shape
    if values.dtype != np.float64 or values.size != rows * width:
        return None
    return list(facts.names), values.reshape(rows, width)


def _fits_as_floats(tensor: TensorInput, facts: _SchemaFacts) -> bool:
    """Whether a matrix-layout tensor is floats as wide as the schema (rows not negative): the
    ``MatrixPayload`` case of ``to_payload``, once its values are floats."""
    rows, width = tensor.shape
    return tensor.datatype in _FLOAT_DATATYPES and width == len(facts.names) and rows >= 0


def json_float_payload(
    request: InferenceRequest, datas: list[list[Any]], schema: InputSchema
) -> MatrixPayload | None:
    """The ``MatrixPayload`` ``to_payload`` gives for ``request`` once its inputs hold
    ``datas`` (JSON data, one list per input), when its inputs are floats for a numeric schema
    (one 2-D tensor, or one per feature); None when ``to_payload`` would give or raise anything
    else (the general path then says what)."""
    facts = _facts(schema)
    if not facts.numeric:
        return None
    tensor = _matrix_input(request.inputs, facts.types)
    if tensor is None:
        return _feature_matrix(request.inputs, facts.names, datas)
    if not _fits_as_floats(tensor, facts):
        return None
    rows, width = tensor.shape
    matrix = _json_float_matrix(datas[0], rows, width)
    return None if matrix is None else MatrixPayload(list(facts.names), matrix)
