"""The prediction routes' direct path (``server.predict_routes``) answers as the FastAPI routes
do: the same answers and refusals, and the paths it leaves to FastAPI still answered there."""

from __future__ import annotations

from typing import Any

import pytest
from factories import iris_instance, register_iris
from fastapi.testclient import TestClient

from modelserve.core.db import MAX_ID

BODY = {"instances": [iris_instance(0)]}
V2_BODY = {
    "inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": list(iris_instance(0).values())}
    ]
}


def answer(response: Any) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    return body["predictions"], body["version"]


def test_paths_in_another_spelling_are_left_to_fastapi_and_answered_alike(
    client: TestClient,
) -> None:
    register_iris(client)
    want = answer(client.post("/v1/models/iris/versions/1/predict", json=BODY))
    # "01" and "+1" are not the canonical spelling the direct path takes: FastAPI parses them
    for spelling in ("01", "+1"):
        got = client.post(f"/v1/models/iris/versions/{spelling}/predict", json=BODY)
        assert answer(got) == want
    v2 = client.post("/v2/models/iris/versions/01/infer", json=V2_BODY)
    assert v2.status_code == 200, v2.text
    assert v2.json()["model_version"] == "1"


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/models/{'n' * 129}/predict",
        "/v1/models/iris/versions/0/predict",
        f"/v1/models/iris/versions/{MAX_ID + 1}/predict",
        "/v1/models/iris/versions/one/predict",
        f"/v1/models/iris/aliases/{'a' * 65}/predict",
        f"/v2/models/{'n' * 129}/infer",
        "/v2/models/iris/versions/0/infer",
    ],
    ids=[
        "long name",
        "version 0",
        "version too big",
        "version not a number",
        "long alias",
        "v2 long name",
        "v2 version 0",
    ],
)
def test_invalid_path_parameters_get_fastapis_refusal(client: TestClient, path: str) -> None:
    register_iris(client)
    response = client.post(path, json=BODY)
    assert response.status_code == (400 if path.startswith("/v2") else 422), response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert [problem["loc"][0] for problem in body["details"]] == ["path"]


def test_refusals_on_the_direct_path_use_the_error_envelope(
    client: TestClient, anon: TestClient
) -> None:
    register_iris(client)
    missing = client.post("/v1/models/nope/predict", json=BODY)
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    unauthenticated = anon.post("/v1/models/iris/predict", json=BODY)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["code"] == "not_authenticated"
    assert "www-authenticate" in unauthenticated.headers
    v2_missing = client.post("/v2/models/nope/infer", json=V2_BODY)
    assert v2_missing.status_code == 404
    assert "error" in v2_missing.json()  # V2's own error shape, as the route answers it
    for response in (missing, unauthenticated, v2_missing):
        assert response.headers["x-content-type-options"] == "nosniff"  # still guarded


def test_other_methods_and_trailing_slashes_are_fastapis(client: TestClient) -> None:
    register_iris(client)
    assert client.get("/v1/models/iris/predict").status_code == 405
    slashed = client.post("/v1/models/iris/predict/", json=BODY, follow_redirects=False)
    assert slashed.status_code in (307, 404)
