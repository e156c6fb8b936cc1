"""``protocols.v2.decode.read``: whichever way a body is read (a fast read of a small or large
JSON float tensor, or of a binary one, or the general path), it gives the general path's request,
payload and log entry, or its refusal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from factories import IRIS_FEATURES, fit_iris, iris_frame, register_iris
from fastapi.testclient import TestClient

from modelserve.core.errors import AppError
from modelserve.core.http import parse_json
from modelserve.inference.body_matrix import MIN_BYTES, float_tensor_request
from modelserve.inference.intake import MatrixPayload
from modelserve.lifecycle.routing import Target
from modelserve.protocols.v2 import binary
from modelserve.protocols.v2.decode import Read, decode, read
from modelserve.registry.service import ResolvedVersion

ROWS = iris_frame()[IRIS_FEATURES].to_numpy()[[0, 60, 120]]


def iris_version(client: TestClient) -> ResolvedVersion:
    register_iris(client)
    state = client.app.state.modelserve  # type: ignore[attr-defined]
    version: ResolvedVersion = state.inference.resolve(Target("iris"))
    return version


def json_body(rows: np.ndarray, *, nested: bool = False, **extra: Any) -> bytes:
    data = rows.tolist() if nested else rows.ravel().tolist()
    tensor = {"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": data}
    return orjson.dumps({**extra, "inputs": [tensor | extra.pop("tensor", {})]})


def feature_body(rows: np.ndarray, *, as_column: bool = False, **extra: Any) -> bytes:
    """One FP64 input per feature ([N], or [N, 1] with ``as_column``, in reverse order), as
    MLServer's pandas codec takes them."""
    shape = [len(rows), 1] if as_column else [len(rows)]
    inputs = [
        {"name": name, "shape": shape, "datatype": "FP64", "data": column.tolist()}
        for name, column in zip(IRIS_FEATURES, rows.T, strict=False)  # fewer rows.T: a gap
    ]
    return orjson.dumps({**extra, "inputs": inputs[::-1] if as_column else inputs})


def nested_columns(body: bytes) -> bytes:
    """The request with each input's data as rows of one value (``[[v], [v], ...]``)."""
    request = orjson.loads(body)
    for tensor in request["inputs"]:
        tensor["data"] = [[value] for value in tensor["data"]]
    return orjson.dumps(request)


def escaped(body: bytes) -> bytes:
    """The same request with its first key spelled with an escape (which simdjson's read of
    large bodies leaves to orjson)."""
    return body.replace(b'"inputs"', b'"\\u0069nputs"', 1)


def binary_body(values: np.ndarray, shape: list[int], **extra: Any) -> tuple[bytes, str]:
    blob = values.tobytes()
    datatype = {"f2": "FP16", "f4": "FP32", "f8": "FP64", "i8": "INT64"}[values.dtype.str[1:]]
    tensor = {"name": "x", "shape": shape, "datatype": datatype}
    tensor["parameters"] = {"binary_data_size": len(blob)}
    header = orjson.dumps({**extra, "inputs": [tensor]})
    return header + blob, str(len(header))


def general(body: bytes, header: str | None, version: ResolvedVersion) -> Read:
    """What the general path alone makes of a body."""
    raw: Any = None
    try:
        if header is None:
            raw, arrays = parse_json(body), {}
        else:
            json_part, blob = binary.split(body, header)
            raw, arrays = binary.attach_inputs(parse_json(json_part), blob)
        request, payload = decode(raw, arrays, version)
    except AppError as exc:
        return Read(None, raw, exc)
    return Read(request, payload, None)


def took_fast_read(outcome: Read) -> bool:
    """A fast read leaves the request's one input without values (they travel in the payload)."""
    assert outcome.request is not None
    return all(t.data == [] and t.array is None for t in outcome.request.inputs)


def logged(payload: Any) -> Any:
    """What the log keeps of a payload, as JSON text."""
    if not isinstance(payload, MatrixPayload):
        return orjson.dumps(payload)
    fragment, encoding = payload.logged()
    return orjson.dumps(fragment), encoding


def same(fast: Read, slow: Read) -> None:
    if slow.error is not None:
        assert fast.error is not None
        assert (fast.error.status_code, fast.error.message) == (
            slow.error.status_code,
            slow.error.message,
        )
        assert fast.payload == slow.payload
        return
    assert fast.error is None
    assert fast.request is not None
    assert slow.request is not None
    assert fast.request.model_dump(exclude={"inputs"}) == slow.request.model_dump(
        exclude={"inputs"}
    )
    assert fast.request.inputs[0].model_dump(exclude={"data"}) == slow.request.inputs[0].model_dump(
        exclude={"data"}
    )
    assert isinstance(fast.payload, MatrixPayload)
    assert isinstance(slow.payload, MatrixPayload)
    assert fast.payload.names == slow.payload.names
    assert fast.payload.matrix.dtype == slow.payload.matrix.dtype
    assert fast.payload.matrix.tobytes() == slow.payload.matrix.tobytes()
    assert fast.payload.binary == slow.payload.binary
    assert logged(fast.payload) == logged(slow.payload)
    assert fast.payload.columnar() == slow.payload.columnar()


ALL_ROWS = iris_frame()[IRIS_FEATURES].to_numpy()
FAST: dict[str, Callable[[], bytes]] = {
    "flat": lambda: json_body(ROWS),
    "nested": lambda: json_body(ROWS, nested=True),
    "id, parameters and outputs": lambda: json_body(
        ROWS, id="a", parameters={"p": 1}, outputs=[{"name": "predict_proba"}]
    ),
    "FP32, one row": lambda: json_body(ROWS[:1], tensor={"datatype": "FP32"}),
    "one input per feature": lambda: feature_body(ROWS, parameters={"content_type": "pd"}),
    "per feature, [N, 1], reversed": lambda: feature_body(ROWS[:1], as_column=True),
    "per feature, large": lambda: feature_body(ALL_ROWS),
    "a large tensor simdjson leaves": lambda: escaped(json_body(ALL_ROWS, nested=True)),
    # a skeleton too large to keep: validated each time, read the same
    "huge parameters": lambda: feature_body(ROWS, parameters={"note": "x" * 40_000}),
}


def test_float_json_inputs_are_read_as_the_general_path_reads_them(client: TestClient) -> None:
    version = iris_version(client)
    assert len(FAST["per feature, large"]()) >= MIN_BYTES
    assert float_tensor_request(FAST["a large tensor simdjson leaves"]()) is None
    for case, make in FAST.items():
        body = make()
        for _ in range(2):  # the skeleton validated, then kept
            fast = read(body, None, version)
            assert took_fast_read(fast), case
            same(fast, general(body, None, version))


DECLINED: dict[str, Callable[[], bytes]] = {
    # an integer is logged as one: the general path's matrix-less payload
    "an integer": lambda: json_body(ROWS).replace(b"5.1,", b"5,", 1),
    "a string": lambda: json_body(ROWS).replace(b"5.1,", b'"5.1",', 1),
    "rows of the wrong width": lambda: json_body(ROWS[:, :3]),
    "data shorter than the shape": lambda: json_body(ROWS, tensor={"shape": [4, 4]}),
    "an output the model lacks": lambda: json_body(ROWS, outputs=[{"name": "nope"}]),
    "an integer tensor": lambda: json_body(ROWS, tensor={"datatype": "INT64"}),
    "an invalid id": lambda: json_body(ROWS, id=7),
    "not an object": lambda: b"[1.5, 2.5]",
    "per feature, an integer": lambda: feature_body(ROWS).replace(b"5.1,", b"5,", 1),
    "per feature, one missing": lambda: feature_body(ROWS[:, :3]),
    "per feature, lengths differ": lambda: feature_body(ROWS).replace(b"5.1,", b"", 1),
    "per feature, [N, 1] nested": lambda: nested_columns(feature_body(ROWS, as_column=True)),
}


def test_a_small_body_the_fast_read_declines_gets_the_general_answer(client: TestClient) -> None:
    version = iris_version(client)
    for case, make in DECLINED.items():
        body = make()
        fast, slow = read(body, None, version), general(body, None, version)
        assert fast.error is not None or not took_fast_read(fast), case
        if slow.error is None:
            assert fast.request is not None
            assert slow.request is not None
            assert fast.request.model_dump() == slow.request.model_dump()
            assert type(fast.payload) is type(slow.payload)
            assert logged(fast.payload) == logged(slow.payload)
        else:
            same(fast, slow)


def test_a_binary_float_tensor_is_read_as_the_general_path_reads_it(client: TestClient) -> None:
    version = iris_version(client)
    for dtype in ("<f8", "<f4", "<f2"):
        for rows in (ROWS, ROWS[:1]):
            body, header = binary_body(rows.astype(dtype).ravel(), list(rows.shape), id="b")
            for _ in range(2):
                fast = read(body, header, version)
                assert took_fast_read(fast), dtype
                same(fast, general(body, header, version))


def test_a_binary_body_the_fast_read_declines_gets_the_general_answer(
    client: TestClient,
) -> None:
    version = iris_version(client)
    values = ROWS.ravel()
    cases = [
        binary_body(values, [3, 3]),  # more values than the shape holds
        binary_body(values[:-1], [3, 4]),
        binary_body(ROWS[:, :3].ravel(), [3, 3]),  # too narrow for the model
        binary_body(values.astype("<i8"), [3, 4]),  # integers
        binary_body(values, [3, 4], outputs=[{"name": "nope"}]),
        (binary_body(values, [3, 4])[0][:-4], binary_body(values, [3, 4])[1]),  # cut short
    ]
    for body, header in cases:
        fast, slow = read(body, header, version), general(body, header, version)
        if slow.error is not None:
            same(fast, slow)
        else:
            assert fast.request is not None
            assert slow.request is not None
            assert fast.request.model_dump() == slow.request.model_dump()
            assert fast.request.inputs[0].array is not None  # the general path's request
            assert logged(fast.payload) == logged(slow.payload)


def test_small_and_binary_fast_reads_answer_and_log_as_sklearn(client: TestClient) -> None:
    """Through HTTP: the answers are scikit-learn's, and the log reads back what was sent."""
    register_iris(client)
    model = fit_iris()
    expected = model.predict_proba(ROWS).ravel().tolist()
    body, header = binary_body(ROWS.ravel(), [3, 4])
    requests: list[dict[str, Any]] = [
        {"content": json_body(ROWS)},
        {"content": body, "headers": {"Inference-Header-Content-Length": header}},
    ]
    for request in requests:
        response = client.post("/v2/models/iris/infer", **request)
        assert response.status_code == 200, response.text
        proba = next(o for o in response.json()["outputs"] if o["name"] == "predict_proba")
        assert proba["data"] == expected
        [entry] = client.get("/v1/predictions", params={"limit": 1}).json()["data"]
        assert entry["inputs"] == {"columns": IRIS_FEATURES, "data": ROWS.tolist()}


def test_text_orjson_cannot_write_is_answered_not_a_server_error(client: TestClient) -> None:
    """A lone surrogate (``\\ud800``, which the JSON parser takes but orjson cannot write back)
    in the id, a parameter or an input's name: the general path's answer, never a 500."""
    register_iris(client)
    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0].tolist()}
    bodies = [
        orjson.dumps({"id": "SURROGATE", "inputs": [tensor]}),
        orjson.dumps({"parameters": {"p": "SURROGATE"}, "inputs": [tensor]}),
        orjson.dumps({"inputs": [tensor | {"name": "SURROGATE"}]}),
    ]
    for body in bodies:
        response = client.post(
            "/v2/models/iris/infer", content=body.replace(b"SURROGATE", b"\\ud800")
        )
        assert response.status_code in (200, 400), response.text
        assert response.json()
        [entry] = client.get("/v1/predictions", params={"limit": 1}).json()["data"]
        assert entry["http_status"] == response.status_code


def test_requests_whose_skeletons_differ_only_in_non_finite_numbers_are_told_apart(
    client: TestClient,
) -> None:
    """``NaN`` (which the JSON parser takes) and ``null`` are one text to orjson: a request
    with ``NaN`` in its parameters must not lend its request model to one with ``null``."""
    register_iris(client)
    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0].tolist()}
    spelled = orjson.dumps({"parameters": {"binary_data_output": None}, "inputs": [tensor]})
    for value, binary_answer in ((b"NaN", True), (b"null", False), (b"NaN", True)):
        body = spelled.replace(b'"binary_data_output":null', b'"binary_data_output":' + value)
        response = client.post("/v2/models/iris/infer", content=body)
        assert response.status_code == 200, response.text
        assert ("inference-header-content-length" in response.headers) is binary_answer
