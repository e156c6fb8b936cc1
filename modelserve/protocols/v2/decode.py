"""A V2 infer request's body as the validated request and the payload the inference service takes.

Two ways in, one answer: ``decode`` is the general one (the JSON, or the JSON part of a binary
request with its tensors attached, validated by pydantic, then ``codec.to_payload``);
``read_float_tensor`` takes the commonest request, one 2-D float tensor of JSON numbers for a
numeric schema, without a Python object per value (``inference/body_matrix.py``) and gives what
``decode`` would, or None, and then ``decode`` reads the body.

The fast read also keeps the request model validated from what a request holds besides its
data (its "skeleton": ``id``, ``parameters``, ``outputs``, the tensor's name, shape and
datatype), keyed by the skeleton's JSON text: a client sends the same skeleton with every
request of a size, so pydantic runs once for it, not per request. A kept model is shared by the
requests that reuse it, read only (its one input's ``data`` is empty: the values travel in the
payload).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from pydantic import ValidationError

from modelserve.core.errors import AppError, BadRequest, validation_problems
from modelserve.core.http import parse_json
from modelserve.inference.body_matrix import float_tensor_request
from modelserve.inference.intake import MatrixPayload
from modelserve.protocols.v2 import binary
from modelserve.protocols.v2.codec import float_tensor_matrix, to_payload
from modelserve.protocols.v2.outputs import available_outputs
from modelserve.protocols.v2.schemas import InferenceRequest
from modelserve.registry.service import ResolvedVersion

_SKELETONS: dict[bytes, InferenceRequest] = {}
_SKELETONS_KEPT = 256
"""How many skeletons are kept (all dropped at once when full: a client that sends a new ``id``
each time only refills it)."""


def parse(body: bytes, binary_header: str | None) -> tuple[Any, dict[int, np.ndarray[Any, Any]]]:
    """The JSON request, and the binary inputs' arrays by input index (``binary_header``: the
    ``Inference-Header-Content-Length`` header, if sent)."""
    if binary_header is None:
        return parse_json(body), {}
    json_part, blob = binary.split(body, binary_header)
    return binary.attach_inputs(parse_json(json_part), blob)


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


def read_float_tensor(
    body: bytes, version: ResolvedVersion
) -> tuple[InferenceRequest, MatrixPayload] | None:
    """The request and its ``MatrixPayload`` when ``body_matrix`` reads a JSON body's one float
    tensor for a numeric schema, as ``decode`` would give them; else None, and ``decode`` reads
    the body (and says what is wrong with it, if anything is)."""
    read = float_tensor_request(body)
    if read is None:
        return None
    request = _SKELETONS.get(read.skeleton)
    if request is None:
        try:
            request = InferenceRequest.model_validate(read.request)
        except ValidationError:
            return None
        if len(_SKELETONS) >= _SKELETONS_KEPT:
            _SKELETONS.clear()
        _SKELETONS[read.skeleton] = request
    try:
        _check_outputs(request, version)
    except AppError:
        return None
    read_matrix = float_tensor_matrix(request, read.values, version.input_schema)
    if read_matrix is None:
        return None
    names, matrix = read_matrix
    original = partial(_general_columnar, body, version)
    payload = MatrixPayload(names, matrix, original, read.data_text, flat=not read.nested)
    return request, payload


def _general_columnar(body: bytes, version: ResolvedVersion) -> Any:
    """The columnar payload the general path reads from a body ``read_float_tensor`` took."""
    _, payload = decode(parse_json(body), {}, version)
    return payload.columnar() if isinstance(payload, MatrixPayload) else payload
