"""``inference.body_matrix`` reads the numbers orjson reads, bit for bit, and leaves every body
it cannot be sure of to the general path."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import orjson
import pytest

from modelserve.inference.body_matrix import (
    MIN_BYTES,
    columnar_matrix,
    float_tensor_request,
    read_v1_payload,
)
from modelserve.inference.intake import MatrixPayload

NAMES = ["a", "b[0]", "c"]


def spelled(rng: random.Random) -> str:
    """A JSON number in one of the many ways a client may spell it (below 2**63: larger ones
    take the general path)."""
    value = rng.choice(
        [
            rng.uniform(-1e6, 1e6),
            rng.gauss(0, 1),
            10.0 ** rng.uniform(-320, 18),
            -(10.0 ** rng.uniform(-320, 18)),
            float(rng.randint(-(2**53), 2**53)),
        ]
    )
    form = rng.randrange(7)
    if form == 0:
        return repr(value)
    if form == 1:
        return f"{value:.17g}"
    if form == 2:
        return f"{value:.3E}"
    if form == 3:  # more digits than a double holds: rounding decides
        digits = "".join(rng.choice("0123456789") for _ in range(25))
        return f"{rng.choice(['', '-'])}{rng.randint(0, 9)}.{digits}e{rng.randint(-300, 17)}"
    if form == 4:
        return str(rng.randint(-(2**62), 2**62))
    if form == 5:
        return rng.choice(["0", "-0", "-0.0", "5e-324", "2.2250738585072014e-308", "4.9e-324"])
    return f"{value:.6f}"


def columnar_text(rows: list[list[str]], names: list[str] = NAMES) -> bytes:
    data = ",".join("[" + ",".join(row) + "]" for row in rows)
    return b'{"columns": ' + orjson.dumps(names) + b', "data": [' + data.encode() + b"]}"


def bits(matrix: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(matrix, dtype=np.float64).view(np.uint64)


@pytest.mark.parametrize("seed", range(5))
def test_numbers_are_read_bit_for_bit_as_orjson_reads_them(seed: int) -> None:
    rng = random.Random(seed)
    rows = [[spelled(rng) for _ in NAMES] for _ in range(400)]
    body = columnar_text(rows)
    read = columnar_matrix(body, min_bytes=0)
    assert read is not None
    names, matrix = read
    want = np.array(orjson.loads(body)["data"], dtype=np.float64)
    assert names == NAMES
    assert matrix.shape == (400, 3)
    assert np.array_equal(bits(matrix), bits(want))
    assert matrix.flags.writeable
    tensor = {"name": "x", "shape": [400, 3], "datatype": "FP64", "data": []}
    v2 = orjson.dumps({"id": "a[1]", "inputs": [tensor]}).replace(
        b'"data":[]', b'"data":' + body[body.index(b"[[") : -1]
    )
    v2_read = float_tensor_request(v2, min_bytes=0)
    assert v2_read is not None
    assert v2_read.request == {"id": "a[1]", "inputs": [tensor]}
    assert np.array_equal(bits(v2_read.values.reshape(400, 3)), bits(want))
    assert v2_read.data_text == body[body.index(b"[[") : -1]
    assert v2_read.nested


def test_a_columnar_body_of_numbers_becomes_a_matrix_payload() -> None:
    body = b'{"columns":["a","b[0]","c"],\r\n"data":[' + b"[1,2.5,3],[4,5,6e0]," * 200
    body += b"[7,8,9]]}"
    assert len(body) >= MIN_BYTES
    payload, text = read_v1_payload(body)
    assert isinstance(payload, MatrixPayload)
    assert payload.names == NAMES
    assert payload.matrix[:2].tolist() == [[1.0, 2.5, 3.0], [4.0, 5.0, 6.0]]
    assert payload.columnar() == orjson.loads(body)  # integers kept as integers
    assert text == body.replace(b"\r\n", b"  ")


def test_small_bodies_take_the_general_path() -> None:
    body = columnar_text([["1", "2", "3"]])
    assert len(body) < MIN_BYTES
    assert columnar_matrix(body) is None
    assert columnar_matrix(body, min_bytes=0) is not None
    payload, _ = read_v1_payload(body)
    assert payload == orjson.loads(body)
    tensor = v2_body(GOOD_TENSOR)
    assert float_tensor_request(tensor) is None
    assert float_tensor_request(tensor, min_bytes=0) is not None


NOT_FOR_THE_FAST_READ = {
    "backslash in a name": b'{"columns":["\\u0061","b"],"data":[[1,2]]}',
    "byte order mark": b'\xef\xbb\xbf{"columns":["a","b"],"data":[[1,2]]}',
    "key twice": b'{"columns":["a","b"],"data":[[1,2]],"data":[[3,4]]}',
    "another key": b'{"columns":["a","b"],"data":[[1,2]],"x":1}',
    "ragged rows": b'{"columns":["a","b"],"data":[[1,2,3],[4]]}',
    "nested deeper, same count": b'{"columns":["a","b"],"data":[[1,[2]],[3,4]]}',
    "nested deeper, empty arrays": b'{"columns":["a","b"],"data":[[[],[1,2]],[3,4]]}',
    "a row that is a number": b'{"columns":["a"],"data":[[1],2]}',
    "a string": b'{"columns":["a","b"],"data":[[1,"2"]]}',
    "a boolean": b'{"columns":["a","b"],"data":[[1,true]]}',
    "a null": b'{"columns":["a","b"],"data":[[1,null]]}',
    "an object": b'{"columns":["a","b"],"data":[[1,{"x":2}]]}',
    "NaN": b'{"columns":["a","b"],"data":[[1,NaN]]}',
    "a number too large for a double": b'{"columns":["a"],"data":[[1e400]]}',
    "an integer from 2**63 on": b'{"columns":["a"],"data":[[9223372036854775808]]}',
    "no rows": b'{"columns":["a"],"data":[]}',
    "no columns": b'{"columns":[],"data":[[]]}',
    "a name that is not a string": b'{"columns":["a",2],"data":[[1,2]]}',
    "flat data": b'{"columns":["a","b"],"data":[1,2]}',
    "records": b'{"instances":[{"a":1}]}',
    "an array": b"[[1,2]]",
    "not JSON": b'{"columns":["a"],"data":[[1]]',
    "not UTF-8": b'{"columns":["\xff"],"data":[[1]]}',
}


@pytest.mark.parametrize("body", NOT_FOR_THE_FAST_READ.values(), ids=NOT_FOR_THE_FAST_READ.keys())
def test_bodies_the_fast_read_leaves_to_the_general_path(body: bytes) -> None:
    assert columnar_matrix(body, min_bytes=0) is None


def v2_body(tensor: dict[str, Any], **top: Any) -> bytes:
    return orjson.dumps({**top, "inputs": [tensor]})


GOOD_TENSOR = {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2.5], [3, 4]]}


def test_a_v2_float_tensor_is_read_nested_or_flat() -> None:
    for data in ([[1, 2.5], [3, 4]], [1, 2.5, 3, 4]):
        tensor = {**GOOD_TENSOR, "data": data, "parameters": {"p": [1, "[x"]}}
        read = float_tensor_request(v2_body(tensor, outputs=[{"name": "predict"}]), min_bytes=0)
        assert read is not None
        assert read.request["inputs"][0] == {**tensor, "data": []}
        assert read.request["outputs"] == [{"name": "predict"}]
        assert read.values.tolist() == [1.0, 2.5, 3.0, 4.0]
        assert read.data_text == orjson.dumps(data)  # as spelled
        assert read.nested == isinstance(data[0], list)


@pytest.mark.parametrize("width", [1, 2, 5])
def test_the_text_of_flat_data_spelled_with_spaces(width: int) -> None:
    rows = [[f"{r}.{c} " if c % 2 else f" {r + 1}{c}" for c in range(width)] for r in range(3)]
    flat = ",".join(v for row in rows for v in row)
    body = b'{"inputs":[{"name":"x","shape":[3,%d],"datatype":"FP64","data":[%s]}]}' % (
        width,
        flat.encode(),
    )
    read = float_tensor_request(body, min_bytes=0)
    assert read is not None
    assert read.data_text == b"[" + flat.encode() + b"]"
    assert orjson.loads(read.data_text) == read.values.tolist()
    assert not read.nested


def test_no_data_text_when_data_is_spelled_twice() -> None:
    read = float_tensor_request(v2_body({**GOOD_TENSOR, "name": "data"}), min_bytes=0)
    assert read is not None
    assert read.data_text is None


SPELLED = {
    "nested, spaces at its end": b'{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP64",'
    b'"data":[[1, 2.5],[3,4] ] }]}',
    "nested, spaces everywhere": b'{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP64",'
    b'"data" : [ [1 , 2.5] , [ 3,4 ] ]}]}',
    "a parameter named data before it": b'{"parameters":{"data":[1,2]},"inputs":[{"name":"x",'
    b'"shape":[2,2],"datatype":"FP64","data":[1,2.5,3,4]}]}',
    "a parameter named data after it": b'{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP64",'
    b'"data":[[1,2.5],[3,4]]}],"parameters":{"data":[[5,6],[7,8]]}}',
    "a parameter of nested objects before it": b'{"parameters":{"data":[{"data":[9]}]},'
    b'"inputs":[{"name":"x","shape":[2,2],"datatype":"FP64","data":[[1,2.5],[3,4]]}]}',
    "a string data first": b'{"id":"data","inputs":[{"name":"x","shape":[2,2],'
    b'"datatype":"FP64","data":[[1,2.5],[3,4]]}]}',
}


@pytest.mark.parametrize("body", SPELLED.values(), ids=SPELLED.keys())
def test_data_text_is_the_tensors_data_or_none(body: bytes) -> None:
    """However the body is spelled, the text the log keeps is the tensor's very data, or there
    is none (the log then writes the matrix's own)."""
    read = float_tensor_request(body, min_bytes=0)
    assert read is not None
    assert read.values.tolist() == [1.0, 2.5, 3.0, 4.0]
    if read.data_text is not None:
        data = orjson.loads(read.data_text)
        assert data == ([[1, 2.5], [3, 4]] if read.nested else [1, 2.5, 3, 4])


def test_the_text_of_well_spelled_nested_data_is_found() -> None:
    read = float_tensor_request(SPELLED["nested, spaces everywhere"], min_bytes=0)
    assert read is not None
    assert read.data_text == b"[ [1 , 2.5] , [ 3,4 ] ]"


NOT_A_FLOAT_TENSOR = {
    "an integer datatype": {**GOOD_TENSOR, "datatype": "INT64"},
    "a wrong row count": {**GOOD_TENSOR, "shape": [3, 2]},
    "flat, a wrong count": {**GOOD_TENSOR, "data": [1, 2, 3]},
    "ragged": {**GOOD_TENSOR, "data": [[1, 2, 3], [4]]},
    "nested deeper": {**GOOD_TENSOR, "data": [[1, [2]], [3, 4]]},
    "flat, nested later": {**GOOD_TENSOR, "data": [1, [2], 3, 4]},
    "three dimensions": {**GOOD_TENSOR, "shape": [2, 2, 1]},
    "a zero dimension": {**GOOD_TENSOR, "shape": [0, 2], "data": []},
    "a null": {**GOOD_TENSOR, "data": [[1, None], [3, 4]]},
    "a backslash": {**GOOD_TENSOR, "name": "x\n"},
}


@pytest.mark.parametrize("tensor", NOT_A_FLOAT_TENSOR.values(), ids=NOT_A_FLOAT_TENSOR.keys())
def test_v2_bodies_the_fast_read_leaves_to_the_general_path(tensor: dict[str, Any]) -> None:
    assert float_tensor_request(v2_body(tensor), min_bytes=0) is None


def test_v2_requests_of_other_shapes_are_left_alone() -> None:
    assert float_tensor_request(v2_body(GOOD_TENSOR), min_bytes=0) is not None
    two = orjson.dumps({"inputs": [GOOD_TENSOR, GOOD_TENSOR]})
    assert float_tensor_request(two, min_bytes=0) is None
    twice = v2_body(GOOD_TENSOR).replace(b'"datatype"', b'"datatype":"FP64","datatype"')
    assert float_tensor_request(twice, min_bytes=0) is None
    hidden = v2_body(GOOD_TENSOR, parameters={"a": [1], "a ": [2]}).replace(b'"a "', b'"a"')
    assert (
        float_tensor_request(hidden, min_bytes=0) is None
    )  # a key twice deeper in: brackets do not add up
