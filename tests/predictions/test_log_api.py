"""Reading the prediction log: newest first, per model, cursor pages."""

from __future__ import annotations

from factories import iris_instance, register_iris
from fastapi.testclient import TestClient


def predict(client: TestClient, name: str, n_rows: int) -> str:
    response = client.post(
        f"/v1/models/{name}/predict", json={"instances": [iris_instance()] * n_rows}
    )
    assert response.status_code == 200
    request_id: str = response.json()["request_id"]
    return request_id


def test_pages_newest_first_with_cursor(client: TestClient) -> None:
    register_iris(client, name="a")
    register_iris(client, name="b")
    sent = [predict(client, "a" if i % 2 else "b", i + 1) for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/predictions", params=params).json()
        assert len(page["data"]) <= 3
        seen += [row["request_id"] for row in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(sent))
    only_a = client.get("/v1/predictions", params={"model": "a"}).json()["data"]
    assert [r["request_id"] for r in only_a] == [sent[i] for i in (5, 3, 1)]
    assert {r["model"] for r in only_a} == {"a"}
    assert [r["n_rows"] for r in only_a] == [6, 4, 2]


def test_log_query_errors(client: TestClient) -> None:
    register_iris(client)
    assert client.get("/v1/predictions", params={"model": "nope"}).status_code == 404
    bad_cursor = client.get("/v1/predictions", params={"cursor": "!!garbage"})
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["code"] == "validation_error"
    assert client.get("/v1/predictions", params={"limit": 0}).status_code == 422
    assert client.get("/v1/predictions", params={"limit": 501}).status_code == 422
    assert client.get("/v1/predictions").json() == {"data": [], "next_cursor": None}


def test_the_log_says_which_runtime_ran_the_model(client: TestClient) -> None:
    register_iris(client)
    answers = []
    for runtime in ("onnx", "sklearn"):
        assert client.put("/v1/models/iris/serving", json={"runtime": runtime}).status_code == 200
        v1 = client.post("/v1/models/iris/predict", json={"instances": [iris_instance()]})
        v2 = client.post(
            "/v2/models/iris/infer",
            json={
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1.0] * 4}]
            },
        )
        answers += [v1.json()["runtime"], v2.json()["parameters"]["runtime"]]
    refused = client.post("/v1/models/iris/predict", json={"instances": [{"sepal_length": "x"}]})
    assert refused.status_code == 422
    logged = client.get("/v1/predictions").json()["data"][::-1]  # oldest first
    assert answers == ["onnx", "onnx", "sklearn", "sklearn"]
    assert [row["runtime"] for row in logged] == [*answers, None]


def test_the_log_keeps_the_inputs_as_they_were_written(client: TestClient) -> None:
    # PostgreSQL keeps the log as json, not jsonb (which reorders keys and respells numbers).
    register_iris(client)
    instance = dict(reversed(list(iris_instance().items()))) | {"sepal_width": 3.50}
    assert client.post("/v1/models/iris/predict", json={"instances": [instance]}).status_code == 200
    [row] = client.get("/v1/predictions").json()["data"]
    assert list(row["inputs"][0]) == list(instance)
    assert row["inputs"][0] == instance
