"""The binary tensor data extension: raw little-endian tensor bytes after the JSON header.

A request (or response) whose ``Inference-Header-Content-Length`` header is N carries N bytes of
JSON followed by the tensors marked ``"binary_data_size"`` in its parameters, in order.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from modelserve.core.errors import BadRequest

HEADER = "inference-header-content-length"
_NUMPY_TYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def split(body: bytes, header_length: str) -> tuple[bytes, bytes]:
    """(JSON part, binary part) of a body."""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise BadRequest(f"Invalid {HEADER}: {header_length!r}.")
    size = int(header_length)
    return body[:size], body[size:]


def _decode_bytes(blob: bytes) -> list[str]:
    values, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise BadRequest("Truncated BYTES element in binary data.")
        (length,) = struct.unpack_from("<I", blob, offset)
        offset += 4
        if offset + length > len(blob):
            raise BadRequest("Truncated BYTES element in binary data.")
        try:
            values.append(blob[offset : offset + length].decode())
        except UnicodeDecodeError as exc:
            raise BadRequest("BYTES element is not UTF-8.") from exc
        offset += length
    return values


def _decode(datatype: str, blob: bytes) -> list[Any] | np.ndarray[Any, Any]:
    if datatype == "BYTES":
        return _decode_bytes(blob)
    dtype = _NUMPY_TYPES.get(datatype)
    if dtype is None:
        raise BadRequest(f"Unknown datatype {datatype!r}.")
    width = np.dtype(dtype).itemsize
    if len(blob) % width:
        raise BadRequest(f"{len(blob)} bytes is not a whole number of {datatype} values.")
    return np.frombuffer(blob, dtype=np.dtype(dtype).newbyteorder("<"))


def attach_inputs(request: Any, blob: bytes) -> tuple[Any, dict[int, np.ndarray[Any, Any]]]:
    """The JSON request with each binary input's data filled in from ``blob``: BYTES as lists
    of text; numeric data as arrays, returned by input index (their ``data`` left empty, for
    ``TensorInput.attach``), so no Python object is made per value."""
    arrays: dict[int, np.ndarray[Any, Any]] = {}
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        return request, arrays
    offset = 0
    for index, tensor in enumerate(request["inputs"]):
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            continue
        if type(size) is not int or size < 0 or offset + size > len(blob):
            raise BadRequest(f"Input {tensor.get('name')!r}: bad binary_data_size {size!r}.")
        data = _decode(str(tensor.get("datatype")), blob[offset : offset + size])
        if isinstance(data, np.ndarray):
            arrays[index] = data
            data = []
        tensor["data"] = data
        offset += size
    if offset != len(blob):
        raise BadRequest("Binary data left over after the declared inputs.")
    return request, arrays


def encode(datatype: str, data: list[Any] | np.ndarray[Any, Any]) -> bytes:
    """Raw bytes of an output tensor."""
    if datatype == "BYTES":
        parts = []
        for value in data:
            raw = str(value).encode()
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    return np.asarray(data, dtype=np.dtype(_NUMPY_TYPES[datatype]).newbyteorder("<")).tobytes()
