"""Edge inputs the fuzzer found: each is a clear 4xx and is logged, on both databases."""

from __future__ import annotations

import numpy as np
from factories import (
    IRIS_FEATURES,
    iris_frame,
    iris_instance,
    iris_schema,
    register,
    register_iris,
    to_bytes,
)
from fastapi.testclient import TestClient
from sklearn.linear_model import LinearRegression

BIG = 2**31


def test_ids_beyond_the_column_range_are_422(client: TestClient) -> None:
    register_iris(client)
    for response in (
        client.get(f"/v1/users/{BIG}"),
        client.delete(f"/v1/api-keys/{BIG}"),
        client.get(f"/v1/models/iris/versions/{BIG}"),
        client.post(f"/v1/models/iris/versions/{BIG}/predict", json={"instances": []}),
        client.put("/v1/models/iris/aliases/x", json={"version": BIG}),
        client.post("/v1/api-keys", json={"name": "k", "user_id": BIG}),
    ):
        assert response.status_code == 422, response.text


def test_huge_and_extreme_numbers_are_refused_and_logged(client: TestClient) -> None:
    register_iris(client)
    huge = client.post(
        "/v1/models/iris/predict", json={"instances": [iris_instance() | {"sepal_length": 10**400}]}
    )
    assert huge.status_code == 422
    assert huge.json()["details"][0]["type"] == "out_of_range"
    extreme = client.post(
        "/v1/models/iris/predict",
        json={
            "instances": [
                iris_instance(),
                iris_instance() | {"sepal_length": 1e308, "petal_length": 1e308},
            ]
        },
    )
    assert extreme.status_code == 422, extreme.text
    assert [(p["row"], p["type"]) for p in extreme.json()["details"]] == [(1, "non_finite_output")]
    logged = client.get("/v1/predictions").json()["data"]
    assert [r["http_status"] for r in logged] == [422, 422]
    assert logged[1]["inputs"][0]["sepal_length"] == str(10**400)


def test_outputs_near_the_float_limit_are_served(client: TestClient) -> None:
    # Each row's output is finite though their sum is not: the finiteness check must not refuse.
    frame = iris_frame()
    model = LinearRegression().fit(frame[IRIS_FEATURES].to_numpy(), frame["petal_width"])
    model.coef_ = np.array([1e8, 0.0, 0.0, 0.0])
    model.intercept_ = 0.0
    data = to_bytes(model, "skops")
    schema = iris_schema()
    for feature in schema["features"]:
        feature.pop("maximum", None)
    response = register(client, "big", data, schema, filename="big.skops", runtime="sklearn")
    assert response.status_code == 201, response.text
    rows = [iris_instance() | {"sepal_length": 1.5e300} for _ in range(2)]
    answer = client.post("/v1/models/big/predict", json={"instances": rows})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == [1.5e308, 1.5e308]


def test_nul_characters_are_a_4xx_and_logged(client: TestClient) -> None:
    register_iris(client)
    assert client.get("/v1/models/a%00").status_code in (404, 422)
    assert client.post("/v1/api-keys", json={"name": "k\u0000"}).status_code in (201, 422)
    bad = client.post(
        "/v1/models/iris/predict", json={"instances": [iris_instance() | {"x\u0000": "y\u0000"}]}
    )
    assert bad.status_code == 422
    [row] = client.get("/v1/predictions").json()["data"]
    assert row["inputs"][0]["x\\u0000"] == "y\\u0000"


def test_scalar_bodies_are_logged_and_readable(client: TestClient) -> None:
    register_iris(client)
    for body in (b"5", b'{"instances": 5}', b'"text"', b"null"):
        response = client.post("/v1/models/iris/predict", content=body)
        assert response.status_code == 422, body
    logged = client.get("/v1/predictions").json()["data"]
    assert [r["inputs"] for r in logged] == [None, "text", 5, 5]
