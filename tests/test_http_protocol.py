"""HTTP-level refusals: nesting, unencodable names, media types, body limits, ``Allow``; each is
a 4xx in the error envelope (V2's ``{error}`` shape on /v2 routes)."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
from conftest import ClientFactory
from factories import fit_iris, iris_instance, iris_schema, register_iris, to_bytes
from fastapi.testclient import TestClient

PREDICT = "/v1/models/iris/predict"
INFER = "/v2/models/iris/infer"


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def test_absurd_nesting_is_a_400_on_v1_and_v2(client: TestClient) -> None:
    register_iris(client)
    feature = '{"instances": [{"sepal_length": ' + _nested(1000) + "}]}"
    v1 = client.post(PREDICT, content=feature, headers={"content-type": "application/json"})
    assert v1.status_code == 400, v1.text
    assert v1.json()["code"] == "nesting_too_deep"
    tensor = '{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": ' + _nested(1000)
    v2 = client.post(INFER, content=tensor + "}]}")
    assert v2.status_code == 400, v2.text
    assert "64" in v2.json()["error"]
    # Ordinary nesting is untouched.
    assert client.post(PREDICT, json={"instances": [iris_instance()]}).status_code == 200


# pytest's "error" filter turns an exception in the log writer's thread into a failure here,
# so this also checks the log survives the record (predictions/encoding escapes the name).
def test_a_lone_surrogate_in_a_feature_name_is_a_4xx(client: TestClient) -> None:
    register_iris(client)
    body = b'{"instances": [{"\\ud800": 1, "sepal_length": 5.1}]}'
    response = client.post(PREDICT, content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    problems = response.json()["details"]
    assert any("\\ud800" in str(problem) for problem in problems)


def test_a_chunked_upload_over_the_limit_is_413(make_client: ClientFactory) -> None:
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n'
        + orjson.dumps({"name": "iris", "input_schema": iris_schema()}).decode()
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="m.skops"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    artifact = to_bytes(fit_iris(), "skops")

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield head
        yield artifact
        yield f"\r\n--{boundary}--\r\n".encode()

    with make_client(max_upload_bytes=4096) as client:
        response = client.post(
            "/v1/models",
            content=chunks(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"


def test_non_json_media_types_are_415(client: TestClient) -> None:
    register_iris(client)
    body = orjson.dumps({"instances": [iris_instance()]})
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
    ):
        response = client.post(PREDICT, content=body, headers={"content-type": content_type})
        assert response.status_code == 415, (content_type, response.text)
        assert response.json()["code"] == "unsupported_media_type"
    form = client.post("/v1/api-keys", data={"name": "k"})
    assert form.status_code == 415, form.text
    v2 = client.post(INFER, content=b"{}", headers={"content-type": "text/plain"})
    assert v2.status_code == 415
    assert "error" in v2.json()
    for accepted in ("application/json; charset=UTF-8", "application/vnd.x+json", None):
        headers = {"content-type": accepted} if accepted else {}
        assert client.post(PREDICT, content=body, headers=headers).status_code == 200, accepted
    assert client.post("/v1/api-keys", content=b'{"name": "k"}').status_code == 201


def test_utf16_bodies_are_refused(client: TestClient) -> None:
    register_iris(client)
    text = orjson.dumps({"instances": [iris_instance()]}).decode()
    json_type = {"content-type": "application/json"}
    for encoding in ("utf-16", "utf-16-le", "utf-32"):
        body = text.encode(encoding)
        predicted = client.post(PREDICT, content=body, headers=json_type)
        assert predicted.status_code == 415, (encoding, predicted.text)
        key = client.post(
            "/v1/api-keys", content='{"name": "k"}'.encode(encoding), headers=json_type
        )
        assert key.status_code == 415, (encoding, key.text)
        assert key.json()["code"] == "unsupported_media_type"


def test_allow_lists_every_method_of_the_path(client: TestClient) -> None:
    register_iris(client)
    response = client.delete("/v1/models")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    traffic = client.post("/v1/models/iris/traffic")
    assert {"GET", "PUT"} <= {m.strip() for m in traffic.headers["allow"].split(",")}
