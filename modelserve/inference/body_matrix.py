"""Request bodies read straight into a float64 matrix, with no Python object per value.

A v1 columnar body (``{"columns": [...], "data": [[...], ...]}``) or a V2 request whose one input
is a 2-D float tensor is mostly numbers. orjson makes a Python float of each one, which the
matrix checks then type one by one before numpy copies them again; simdjson parses the body in C
and hands the numbers over as one buffer of doubles (``Array.as_buffer``) that numpy takes as
it is: about 45 us for 100 rows of 30 features here, against 230 for orjson, the type check and
``np.array``.

The fast read takes a body only when it means exactly what the general path (``parse_json``,
then ``intake`` or the V2 codec) would read from it, and returns None for anything else, which
then takes the general path and is answered or refused as before:

* strict JSON that orjson takes too (both refuse NaN, bad numbers, bad UTF-8 and unescaped
  control characters; simdjson also skips a byte order mark, which orjson refuses);
* no backslash anywhere, so every string is spelled as it is: counting ``[`` in the body then
  counts the arrays plus the brackets inside strings, which is how nesting deeper than a matrix
  is ruled out without walking the data;
* no key twice in an object the read looks into (the two parsers would pick different ones);
* the data nested exactly as a matrix (or, in V2, flat with as many values as its shape), of
  numbers only.

Both parsers round decimal numbers correctly, so the doubles are the very values orjson gives
(``tests/inference/test_body_matrix.py`` checks this bit for bit).
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple, cast

import numpy as np
import orjson
import simdjson

from modelserve.core.http import log_text, parse_json, parse_json_text
from modelserve.inference.intake import MatrixPayload

MIN_BYTES = 2048
"""Smaller bodies take the general path: for a few rows, orjson and the matrix checks cost less
than simdjson's fixed costs here (one row of 30 features: 23 us against 31 for v1, 33 against
74 for V2; the fast read wins from about five rows, 1.4 KB)."""
_BOM = b"\xef\xbb\xbf"
_REFUSED = (ValueError, TypeError, KeyError, IndexError, RuntimeError)
"""What pysimdjson raises for a document, or a part of one, it will not read as asked."""
_FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})
_OPEN, _CLOSE = b"[]"
_LARGE = float(2**63)
"""Numbers at least this large take the general path (``intake`` has a rule for such integers)."""


def _document(body: bytes, min_bytes: int) -> simdjson.Object | None:
    if len(body) < min_bytes or b"\\" in body or body.startswith(_BOM):
        return None
    try:
        # A parser per body: a reused one refuses to parse while objects of the last document
        # live, and making one costs well under a microsecond.
        root = simdjson.Parser().parse(body)
    except _REFUSED:
        return None
    return root if isinstance(root, simdjson.Object) and _distinct_keys(root) else None


def _distinct_keys(value: simdjson.Object) -> bool:
    keys = list(value.keys())
    return len(keys) == len(set(keys))


def _rows(data: simdjson.Array, rows: int, width: int) -> bool:
    """Whether ``data`` holds ``rows`` arrays of ``width`` items each."""
    return len(data) == rows and all(
        isinstance(row, simdjson.Array) and len(row) == width for row in data
    )


def _doubles(data: simdjson.Array) -> np.ndarray[Any, Any] | None:
    """Every number of ``data`` as doubles, row-major; None if it holds anything else."""
    try:
        # A copy: an array over simdjson's buffer would be read-only.
        flat = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64).copy()
    except _REFUSED:
        return None
    return None if (np.abs(flat) >= _LARGE).any() else flat


def _python(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def columnar_matrix(
    body: bytes, *, min_bytes: int = MIN_BYTES
) -> tuple[list[str], np.ndarray[Any, Any]] | None:
    """The column names and the rows x columns matrix of a v1 columnar body of numbers of at
    least ``min_bytes``; None for any other body (see the module's docstring)."""
    root = _document(body, min_bytes)
    if root is None or set(root.keys()) != {"columns", "data"}:
        return None
    columns, data = root["columns"], root["data"]
    if not isinstance(columns, simdjson.Array) or not isinstance(data, simdjson.Array):
        return None
    listed = columns.as_list()
    if not listed or not all(type(name) is str for name in listed):
        return None
    names = cast(list[str], listed)
    rows, width = len(data), len(names)
    if not rows or not _rows(data, rows, width):
        return None
    brackets = 2 + rows + sum(name.count("[") for name in names)
    if _brackets(body) != brackets:
        return None  # arrays nested deeper somewhere
    flat = _doubles(data)
    return None if flat is None else (names, flat.reshape(rows, width))


class FloatTensorRequest(NamedTuple):
    """What ``float_tensor_request`` reads of a V2 request."""

    request: dict[str, Any]
    """The request, its one input's ``data`` left empty."""
    skeleton: bytes
    """``request``'s JSON text (orjson's), which tells requests that differ only in their data
    apart from the rest."""
    values: np.ndarray[Any, Any]
    """The data as doubles, flat, row-major (what the binary extension gives, for
    ``TensorInput.attach``)."""
    data_text: bytes | None
    """The data's own text, on one line, for the log; None if not found."""
    nested: bool
    """Whether the data came as rows (``[[...],[...]]``), else flat."""


def float_tensor_request(body: bytes, *, min_bytes: int = MIN_BYTES) -> FloatTensorRequest | None:
    """A V2 request of at least ``min_bytes`` whose only input is a 2-D float tensor (FP16,
    FP32 or FP64) of JSON numbers; None for any other body (see the module's docstring)."""
    root = _document(body, min_bytes)
    if root is None:
        return None
    inputs = root.get("inputs")
    if not isinstance(inputs, simdjson.Array) or len(inputs) != 1:
        return None
    tensor = inputs[0]
    if not isinstance(tensor, simdjson.Object) or not _distinct_keys(tensor):
        return None
    data, shape = tensor.get("data"), tensor.get("shape")
    if tensor.get("datatype") not in _FLOAT_DATATYPES:
        return None
    if not isinstance(data, simdjson.Array) or not isinstance(shape, simdjson.Array):
        return None
    dims = shape.as_list()
    if len(dims) != 2 or not all(type(d) is int and d > 0 for d in dims):
        return None
    rows, width = cast(list[int], dims)
    nested = len(data) > 0 and isinstance(data[0], simdjson.Array)
    if not (_rows(data, rows, width) if nested else len(data) == rows * width):
        return None
    request = {key: _python(root[key]) for key in root if key != "inputs"}
    request["inputs"] = [{key: [] if key == "data" else _python(tensor[key]) for key in tensor}]
    skeleton = orjson.dumps(request)
    # The body's brackets are the request's (data left empty) plus one per row, or it nests
    # deeper somewhere.
    if _brackets(body) != skeleton.count(b"[") + (rows if nested else 0):
        return None
    flat = _doubles(data)
    if flat is None:
        return None
    text = _data_text(body, rows, nested=nested)
    return FloatTensorRequest(request, skeleton, flat, text, nested)


def _brackets(body: bytes) -> int:
    """How many ``[`` the body holds (numpy counts in half the time of ``bytes.count``)."""
    return int(np.count_nonzero(np.frombuffer(body, np.uint8) == _OPEN))


def _data_text(body: bytes, rows: int, *, nested: bool) -> bytes | None:
    """The text of a read tensor's data (its numbers spelled as the client spelled them, for
    the log: integers stay integers), on one line (``log_text``); None if it cannot be told
    apart for sure.

    The first ``"data"`` of a body with no backslash, followed by a colon and a ``[``, is a key
    and that array its value. The array's text ends at the first ``]`` (flat) or the rows +
    1st; when it holds no quote, and no ``"data"`` comes after it, that key is the only one in
    the body, so the tensor's."""
    key = body.find(b'"data"')
    if key < 0:
        return None
    start = body.find(b"[", key)
    if start < 0 or body[key + 6 : start].strip() != b":":
        return None
    end = _nested_end(body, start, rows) if nested else body.index(b"]", start) + 1
    if body.find(b'"', start, end) >= 0 or body.find(b'"data"', end) >= 0:
        return None
    return log_text(body[start:end])


def _nested_end(body: bytes, start: int, rows: int) -> int:
    """Where nested data of ``rows`` rows, starting at ``start``, ends: just past its rows +
    1st ``]``; most often the first ``]]`` (the last row's end and the data's)."""
    close = body.find(b"]]", start) + 2
    if close > 1:
        span = np.frombuffer(body, np.uint8, close - start, start)
        if np.count_nonzero(span == _CLOSE) == rows + 1:
            return close
    closing = np.flatnonzero(np.frombuffer(body, np.uint8, offset=start) == _CLOSE)
    return start + int(closing[rows]) + 1


def read_v1_payload(body: bytes) -> tuple[Any, bytes | None]:
    """The v1 payload of a request body and the text the log may keep of it (as
    ``parse_json_text``): a columnar body of numbers as the ``MatrixPayload`` of its values."""
    read = columnar_matrix(body)
    if read is None:
        return parse_json_text(body)
    names, matrix = read
    return MatrixPayload(names, matrix, original=partial(parse_json, body)), log_text(body)
