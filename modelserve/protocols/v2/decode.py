"""A V2 infer request's body as the validated request and the payload the inference service takes.

``read`` is the one way in. The general path (``decode``) validates the JSON, or the JSON part of
a binary request with its tensors attached, with pydantic, then ``codec.to_payload`` builds the
payload. The commonest request, one 2-D float tensor for a numeric schema, is taken by a fast
read that gives what ``decode`` would, or declines and leaves the body to ``decode``:

* a large JSON body is read by ``inference/body_matrix.py`` without a Python object per value;
* any other body of strict JSON (no ``NaN``, no lone surrogate: orjson writes the one as
  ``null`` and refuses the other, so the skeleton's text would not tell such requests apart),
  as orjson parses it for the general path, is taken when its inputs (one 2-D tensor, or one
  per feature) hold floats only (integers are logged as integers: the general path's case);
* a binary body's one float tensor is taken as it arrives.

The fast read also keeps the request model validated from what a request holds besides its
data (its "skeleton": ``id``, ``parameters``, ``outputs``, the tensors' names, shapes and
datatypes), keyed by the skeleton's JSON text (a binary request's JSON part is its skeleton): a
client sends the same skeleton with every request of a size, so pydantic runs once for it, not
per request. A kept model is shared by the requests that reuse it, read only (its inputs'
``data`` is empty: the values travel in the payload).
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import numpy as np
import orjson
from pydantic import ValidationError

from modelserve.core.errors import AppError, BadRequest, validation_problems
from modelserve.core.http import parse_json, parse_json_text
from modelserve.inference.body_matrix import MIN_BYTES, float_tensor_request
from modelserve.inference.intake import MatrixPayload
from modelserve.protocols.v2 import binary
from modelserve.protocols.v2.codec import float_tensor_matrix, json_float_payload, to_payload
from modelserve.protocols.v2.outputs import available_outputs
from modelserve.protocols.v2.schemas import InferenceRequest
from modelserve.registry.service import ResolvedVersion

_SKELETONS: dict[bytes, InferenceRequest] = {}
_SKELETONS_KEPT = 256
"""How many skeletons are kept (all dropped at once when full: a client that sends a new ``id``
each time only refills it)."""
_SKELETON_MAX_BYTES = 16384
"""Larger skeletons (a request with huge ``parameters``, or hundreds of inputs) are validated
each time, not kept: what the cache holds stays within a few megabytes whatever clients send."""


class Read(NamedTuple):
    """What ``read`` makes of a body."""

    request: InferenceRequest | None
    """The validated request; None when ``error`` is set."""
    payload: Any
    """The payload for the inference service, or, with ``error``, what of the body could be
    read (for the log)."""
    error: AppError | None


def read(body: bytes, binary_header: str | None, version: ResolvedVersion) -> Read:
    """The request and payload of an infer body for ``version``, or the error that refuses it
    (``binary_header``: the ``Inference-Header-Content-Length`` header, if sent)."""
    raw: Any = None
    try:
        if binary_header is not None:
            json_part, blob = binary.split(body, binary_header)
            raw, arrays = binary.attach_inputs(parse_json(json_part), blob)
            fast = _binary_float_tensor(json_part, raw, arrays, version)
        else:
            fast = _large_float_tensor(body, version) if len(body) >= MIN_BYTES else None
            if fast is None:
                raw, strict_text = parse_json_text(body)
                arrays = {}
                # Only strict JSON: orjson writes NaN as null and refuses a lone surrogate, so
                # the skeleton's text would not tell such a request apart.
                fast = None if strict_text is None else _parsed_float_inputs(raw, version)
        request, payload = fast if fast is not None else decode(raw, arrays, version)
    except AppError as exc:
        return Read(None, raw, exc)
    return Read(request, payload, None)


def decode(
    body: Any, arrays: dict[int, np.ndarray[Any, Any]], version: ResolvedVersion
) -> tuple[InferenceRequest, dict[str, Any] | MatrixPayload]:
    """The validated request and its payload for ``version`` (``BadRequest`` naming what is
    wrong otherwise)."""
    try:
        request = InferenceRequest.model_validate(body)
    except ValidationError as exc:
        details = validation_problems(exc)
        raise BadRequest("Invalid inference request.", details=details) from exc
    for index, array in arrays.items():
        request.inputs[index].attach(array)
    _check_outputs(request, version)
    return request, to_payload(request, version.input_schema)


def _check_outputs(request: InferenceRequest, version: ResolvedVersion) -> None:
    offered = available_outputs(version.output)
    unknown = [o.name for o in request.outputs or [] if o.name not in offered]
    if unknown:
        raise BadRequest(f"Unknown output(s) {unknown}; this model offers {offered}.")


def _skeleton_request(
    skeleton: bytes, request: Any, version: ResolvedVersion
) -> InferenceRequest | None:
    """The kept request model of ``skeleton`` (``request``, its JSON), if it is valid and asks
    only for outputs ``version`` offers; else None (the general path says what is wrong)."""
    model = _SKELETONS.get(skeleton)
    if model is None:
        try:
            model = InferenceRequest.model_validate(request)
        except ValidationError:
            return None
        if len(skeleton) <= _SKELETON_MAX_BYTES:
            if len(_SKELETONS) >= _SKELETONS_KEPT:
                _SKELETONS.clear()
            _SKELETONS[skeleton] = model
    try:
        _check_outputs(model, version)
    except AppError:
        return None
    return model


def _large_float_tensor(
    body: bytes, version: ResolvedVersion
) -> tuple[InferenceRequest, MatrixPayload] | None:
    read = float_tensor_request(body)
    if read is None:
        return None
    request = _skeleton_request(read.skeleton, read.request, version)
    if request is None:
        return None
    read_matrix = float_tensor_matrix(request, read.values, version.input_schema)
    if read_matrix is None:
        return None
    names, matrix = read_matrix
    original = partial(_general_columnar, body, version)
    payload = MatrixPayload(names, matrix, original, read.data_text, flat=not read.nested)
    return request, payload


def _parsed_float_inputs(
    parsed: Any, version: ResolvedVersion
) -> tuple[InferenceRequest, MatrixPayload] | None:
    """A strict JSON request (as orjson read it) whose inputs hold floats only for a numeric schema
    (one 2-D tensor, or one per feature), as the general path reads it (``codec``'s
    ``json_float_payload``: the same matrix, logged as orjson spells it); None for anything
    else."""
    if type(parsed) is not dict:
        return None
    inputs = parsed.get("inputs")
    if type(inputs) is not list or not inputs:
        return None
    datas = []
    for tensor in inputs:
        if type(tensor) is not dict or type(tensor.get("data")) is not list:
            return None
        datas.append(tensor["data"])
    skeleton = {**parsed, "inputs": [{**tensor, "data": []} for tensor in inputs]}
    request = _skeleton_request(orjson.dumps(skeleton), skeleton, version)
    if request is None:
        return None
    payload = json_float_payload(request, datas, version.input_schema)
    return None if payload is None else (request, payload)


def _binary_float_tensor(
    json_part: bytes,
    parsed: Any,
    arrays: dict[int, np.ndarray[Any, Any]],
    version: ResolvedVersion,
) -> tuple[InferenceRequest, MatrixPayload] | None:
    """A binary request's one float tensor (``arrays``, attached to ``parsed``, the JSON part
    read), as the general path reads it; None for anything else."""
    if list(arrays) != [0] or len(parsed["inputs"]) != 1:
        return None
    if arrays[0].dtype.kind != "f":
        return None
    request = _skeleton_request(json_part, parsed, version)
    if request is None:
        return None
    values = arrays[0].astype(np.float64)  # a copy, as the general path makes
    read_matrix = float_tensor_matrix(request, values, version.input_schema)
    if read_matrix is None:
        return None
    names, matrix = read_matrix
    return request, MatrixPayload(names, matrix, binary=True)


def _general_columnar(body: bytes, version: ResolvedVersion) -> Any:
    """The columnar payload the general path reads from a JSON body a fast read took."""
    _, payload = decode(parse_json(body), {}, version)
    return payload.columnar() if isinstance(payload, MatrixPayload) else payload
