"""Open Inference Protocol (V2) over HTTP: metadata, readiness, both input layouts, outputs,
errors, and the shared log; plus a real third-party client against a real server process."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
import pytest
from factories import (
    IRIS_FEATURES,
    bytes_tensor,
    fit_iris,
    iris_frame,
    iris_instance,
    iris_schema,
    register,
    register_iris,
    to_bytes,
)
from fastapi.testclient import TestClient
from sklearn.linear_model import LinearRegression
from sqlalchemy import text, update

from modelserve.config import Settings
from modelserve.core import migrate
from modelserve.core.db import Database
from modelserve.registry.models import ModelArtifact, ServingForm

ROWS = [iris_instance(0), iris_instance(100)]


def per_feature(rows: list[dict[str, float]] = ROWS) -> list[dict[str, Any]]:
    return [
        {"name": n, "shape": [len(rows)], "datatype": "FP64", "data": [r[n] for r in rows]}
        for n in IRIS_FEATURES
    ]


def tensor(rows: list[dict[str, float]] = ROWS) -> list[dict[str, Any]]:
    return [
        {
            "name": "input-0",
            "shape": [len(rows), 4],
            "datatype": "FP32",
            "data": [[r[n] for n in IRIS_FEATURES] for r in rows],
        }
    ]


def test_server_and_model_metadata(client: TestClient) -> None:
    register_iris(client)
    assert client.get("/v2").json()["name"] == "modelserve"
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2/models/iris").json()
    assert meta["versions"] == ["1"]
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        (n, "FP64") for n in IRIS_FEATURES
    ]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert client.get("/v2/models/iris/versions/1/ready").json() == {"name": "iris", "ready": True}
    missing = client.get("/v2/models/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]


@pytest.mark.parametrize("inputs", [per_feature(), tensor()], ids=["per-feature", "tensor"])
def test_infer_both_layouts(client: TestClient, inputs: list[dict[str, Any]]) -> None:
    register_iris(client)
    response = client.post("/v2/models/iris/infer", json={"id": "abc", "inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("iris", "1", "abc")
    predict, proba = body["outputs"]
    assert predict == {
        "name": "predict",
        "shape": [2],
        "datatype": "BYTES",
        "data": ["setosa", "virginica"],
    }
    assert proba["shape"] == [2, 3]
    assert sum(proba["data"][:3]) == pytest.approx(1.0)
    [row] = client.get("/v1/predictions", params={"limit": 1}).json()["data"]
    assert (row["protocol"], row["n_rows"], row["status"]) == ("v2", 2, "ok")
    # logged in the columnar v1 form: the values the request carried, one array per row
    assert row["inputs"] == {
        "columns": IRIS_FEATURES,
        "data": [[instance[f] for f in IRIS_FEATURES] for instance in ROWS],
    }


def test_feature_inputs_read_as_a_matrix_answer_and_log_as_the_general_path(
    client: TestClient,
) -> None:
    # Flat float data (read straight into a matrix) against the same values nested as [N, 1]
    # (read value by value): same answer and same log entry, for inputs in reverse order, and
    # the same refusal for a value the schema refuses.
    register_iris(client)
    rows = [iris_instance(i) for i in (0, 50, 100, 149)]

    def nested(inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            t | {"shape": [len(t["data"]), 1], "data": [[v] for v in t["data"]]} for t in inputs
        ]

    def logged() -> Any:
        [row] = client.get("/v1/predictions", params={"limit": 1}).json()["data"]
        return {k: row[k] for k in ("inputs", "outputs", "error", "status", "http_status")}

    reversed_inputs = per_feature(rows)[::-1]
    refused = per_feature(rows)
    refused[1] = refused[1] | {"data": [3.0, -1.5, 2.0, 3.0]}  # minimum 0
    for inputs in (reversed_inputs, refused):
        answers, logs = [], []
        for spelling in (inputs, nested(inputs)):
            response = client.post("/v2/models/iris/infer", json={"id": "x", "inputs": spelling})
            answers.append((response.status_code, response.json()))
            logs.append(logged())
        assert answers[0] == answers[1]
        assert logs[0] == logs[1]
    assert answers[0][0] == 400
    assert logs[0]["status"] == "invalid"
    assert logs[0]["error"]["details"][0]["feature"] == IRIS_FEATURES[1]


def test_a_request_shape_read_before_is_checked_again_for_each_model(client: TestClient) -> None:
    """The fast read keeps the request model of a request's skeleton (all but its data): the
    same skeleton with other data gets its own answer, and sent to a model that does not take
    it, the general path's refusal (other width; an output a regressor does not offer)."""
    register_iris(client)
    model = fit_iris()
    frame = iris_frame()
    three = IRIS_FEATURES[:3]
    regressor = LinearRegression().fit(frame[three].to_numpy(), frame[IRIS_FEATURES[3]])
    schema = {"features": [{"name": n, "type": "number"} for n in three]}
    assert register(client, "wide", to_bytes(regressor, "skops"), schema).status_code == 201
    rng = np.random.default_rng(3)
    skeleton = {"id": "same", "outputs": [{"name": "predict_proba"}]}
    for _ in range(2):  # large enough for the fast read, the same skeleton each time
        matrix = rng.uniform(0.1, 7.0, size=(80, 4))
        data = matrix.ravel().tolist()
        inputs = [{"name": "x", "shape": [80, 4], "datatype": "FP64", "data": data}]
        response = client.post("/v2/models/iris/infer", json=skeleton | {"inputs": inputs})
        assert response.status_code == 200, response.text
        [output] = response.json()["outputs"]
        assert output["data"] == model.predict_proba(matrix).ravel().tolist()
    assert client.post("/v2/models/iris/infer", json={"inputs": inputs}).status_code == 200
    response = client.post("/v2/models/wide/infer", json={"inputs": inputs})
    assert response.status_code == 400
    assert "has 4 columns; the model takes 3 features" in response.json()["error"]
    data = matrix[:, :3].ravel().tolist()
    inputs = [{"name": "x", "shape": [80, 3], "datatype": "FP64", "data": data}]
    response = client.post("/v2/models/wide/infer", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    [output] = response.json()["outputs"]
    assert output["data"] == regressor.predict(matrix[:, :3]).tolist()
    response = client.post("/v2/models/wide/infer", json=skeleton | {"inputs": inputs})
    assert response.status_code == 400
    assert "Unknown output(s) ['predict_proba']" in response.json()["error"]
    [row] = client.get("/v1/predictions", params={"limit": 1}).json()["data"]
    assert (row["model"], row["status"], row["http_status"]) == ("wide", "invalid", 400)


def test_outputs_selection_and_generated_id(client: TestClient) -> None:
    register_iris(client)
    body = {"inputs": per_feature(), "outputs": [{"name": "predict_proba"}]}
    answer = client.post("/v2/models/iris/versions/1/infer", json=body).json()
    assert [o["name"] for o in answer["outputs"]] == ["predict_proba"]
    assert len(answer["id"]) == 36
    unknown = client.post(
        "/v2/models/iris/infer", json={"inputs": per_feature(), "outputs": [{"name": "logits"}]}
    )
    assert unknown.status_code == 400


@pytest.mark.parametrize(
    "inputs",
    [
        [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": [1, 2, 3]}],
        [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}],
        [{"name": "input-0", "shape": [1, 4], "datatype": "INT8", "data": [1, 2, 3, 300]}],
        [{"name": "input-0", "shape": [1, 4], "datatype": "BOOL", "data": [1, 2, 3, 4]}],
        [{"name": "input-0", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}],
        per_feature()[:3],
        [{"name": "input-0", "shape": [1, 4], "datatype": "FP128", "data": [1, 2, 3, 4]}],
        [
            {
                "name": "input-0",
                "shape": [2, 4],
                "datatype": "FP64",
                "data": [[1, 2, 3], [4, 5, 6, 7, 8]],
            }
        ],
        [*per_feature(), per_feature()[2]],
    ],
    ids=[
        "shape-mismatch",
        "wrong-width",
        "int8-range",
        "bool-data",
        "bytes-for-numbers",
        "missing-feature",
        "bad-datatype",
        "ragged-nesting",
        "duplicate-input",
    ],
)
def test_bad_input_is_400_and_logged(client: TestClient, inputs: list[dict[str, Any]]) -> None:
    register_iris(client)
    response = client.post("/v2/models/iris/infer", json={"inputs": inputs})
    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str)
    [row] = client.get("/v1/predictions").json()["data"]
    assert (row["protocol"], row["http_status"], row["status"]) == ("v2", 400, "invalid")


def test_v2_needs_a_caller(anon: TestClient, client: TestClient) -> None:
    register_iris(client)
    response = anon.post("/v2/models/iris/infer", json={"inputs": per_feature()})
    assert response.status_code == 401
    assert response.json()["error"]


def test_binary_tensor_extension(client: TestClient) -> None:

    register_iris(client)
    matrix = np.array([[r[n] for n in IRIS_FEATURES] for r in ROWS], dtype="<f4").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(matrix)},
                }
            ],
            "outputs": [
                {"name": "predict", "parameters": {"binary_data": True}},
                {"name": "predict_proba"},
            ],
        }
    )
    response = client.post(
        "/v2/models/iris/infer",
        content=header + matrix,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    size = int(response.headers["inference-header-content-length"])
    meta = orjson.loads(response.content[:size])
    predict, proba = meta["outputs"]
    assert "data" not in predict
    assert len(proba["data"]) == 6
    blob = response.content[size:]
    assert len(blob) == predict["parameters"]["binary_data_size"]
    labels = bytes_tensor(blob)
    assert labels == ["setosa", "virginica"]
    bad = client.post(
        "/v2/models/iris/infer",
        content=header + matrix[:-3],
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert bad.status_code == 400
    nonsense = client.post(
        "/v2/models/iris/infer",
        content=header,
        headers={"Inference-Header-Content-Length": "99999"},
    )
    assert nonsense.status_code == 400


def _binary_request(inputs: list[tuple[str, list[int], np.ndarray[Any, Any]]]) -> dict[str, Any]:
    """A V2 request of binary FP64/FP32 tensors (name, shape, values), as httpx arguments."""
    blobs = [values.tobytes() for _, _, values in inputs]
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": shape,
                    "datatype": "FP32" if values.dtype == np.float32 else "FP64",
                    "parameters": {"binary_data_size": len(blob)},
                }
                for (name, shape, values), blob in zip(inputs, blobs, strict=True)
            ]
        }
    )
    return {
        "content": header + b"".join(blobs),
        "headers": {"Inference-Header-Content-Length": str(len(header))},
    }


def test_inputs_are_logged_compactly_and_read_back_as_columns(
    client: TestClient, db: Database
) -> None:
    """Flat JSON data is kept flat, as spelled (not cut into rows on the request path), and
    binary doubles as their base64 (not spelled in decimal); both read back as the columnar
    JSON of the very same values, for a matrix and for one input per feature, with the same
    answers."""
    register_iris(client)
    rng = np.random.default_rng(7)
    matrix = rng.uniform(0.1, 7.0, size=(60, 4))  # a body large enough for the fast read
    matrix[0, 0] = 5.0
    flat: list[Any] = matrix.ravel().tolist()
    flat[0] = 5  # spelled as an integer, which the log keeps
    columns = {"columns": IRIS_FEATURES, "data": matrix.tolist()}
    json_request = {"inputs": [{"name": "x", "shape": [60, 4], "datatype": "FP64", "data": flat}]}
    forms = {
        "json": {"json": json_request},
        "matrix": _binary_request([("x", [60, 4], matrix.astype("<f8"))]),
        "features": _binary_request(
            [(n, [60], matrix[:, i].astype("<f8")) for i, n in enumerate(IRIS_FEATURES)]
        ),
    }
    answers = []
    for form, request in forms.items():
        response = client.post("/v2/models/iris/infer", **request)
        assert response.status_code == 200, (form, response.text)
        answers.append(response.json()["outputs"])
        [row] = client.get("/v1/predictions", params={"limit": 1}).json()["data"]
        assert row["inputs"] == columns, form
        assert type(row["inputs"]["data"][0][0]) is (int if form == "json" else float)
    assert answers[0] == answers[1] == answers[2]
    with db.engine.connect() as connection:
        stored = connection.execute(
            text("SELECT inputs_encoding, inputs FROM predictions ORDER BY id")
        ).all()
    assert [encoding for encoding, _ in stored] == ["flat", "float64", "float64"]
    kept = [orjson.loads(v) if isinstance(v, str) else v for _, v in stored]
    assert kept[0] == {"columns": IRIS_FEATURES, "data": flat}
    assert set(kept[2]) == {"columns", "data"}
    assert isinstance(kept[2]["data"], str)
    # FP32 values are logged as the doubles they were served as.
    single = matrix.astype("<f4")
    response = client.post("/v2/models/iris/infer", **_binary_request([("x", [60, 4], single)]))
    assert response.status_code == 200, response.text
    [row] = client.get("/v1/predictions", params={"limit": 1}).json()["data"]
    assert row["inputs"] == {"columns": IRIS_FEATURES, "data": single.astype(float).tolist()}


def test_downgrading_spells_compact_inputs_out(
    client: TestClient, db: Database, settings: Settings
) -> None:
    """Reverting migration 0008 leaves the log as 0007 reads it: the columnar JSON."""
    register_iris(client)
    matrix = np.arange(1.0, 201.0).reshape(50, 4) / 3
    flat = {"name": "x", "shape": [50, 4], "datatype": "FP64", "data": matrix.ravel().tolist()}
    for request in ({"json": {"inputs": [flat]}}, _binary_request([("x", [50, 4], matrix)])):
        response = client.post("/v2/models/iris/infer", **request)
        assert response.status_code == 200, response.text
    client.get("/v1/predictions")  # the log is written before it is read
    client.close()
    db.engine.dispose()
    url = settings.resolved_database_url
    try:
        migrate.downgrade(url, "0007")
        with db.engine.connect() as connection:
            stored = connection.execute(text("SELECT inputs FROM predictions")).scalars().all()
        kept = [orjson.loads(v) if isinstance(v, str) else v for v in stored]
        assert kept == [{"columns": IRIS_FEATURES, "data": matrix.tolist()}] * 2
    finally:
        migrate.upgrade(url)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_against_a_real_server(
    server: tuple[str, dict[str, str]], binary: bool
) -> None:
    import httpx
    import tritonclient.http as triton

    base, auth = server
    meta = {"name": "iris", "input_schema": iris_schema(), "alias": "production"}
    created = httpx.post(
        f"{base}/v1/models",
        headers=auth,
        timeout=30,
        data={"metadata": orjson.dumps(meta).decode()},
        files={"file": ("m.skops", to_bytes(fit_iris(), "skops"))},
    )
    assert created.status_code == 201, created.text
    client = triton.InferenceServerClient(base.removeprefix("http://"))
    assert client.is_server_live(headers=auth)
    assert client.is_model_ready("iris", headers=auth)
    metadata = client.get_model_metadata("iris", headers=auth)
    assert [i["name"] for i in metadata["inputs"]] == IRIS_FEATURES
    matrix = np.array([[r[n] for n in IRIS_FEATURES] for r in ROWS], dtype=np.float64)
    tensor_input = triton.InferInput("input-0", list(matrix.shape), "FP64")
    tensor_input.set_data_from_numpy(matrix, binary_data=binary)
    outputs = [
        triton.InferRequestedOutput("predict", binary_data=binary),
        triton.InferRequestedOutput("predict_proba", binary_data=binary),
    ]
    result = client.infer("iris", [tensor_input], outputs=outputs, headers=auth, request_id="req-1")
    assert result.get_response()["id"] == "req-1"
    for name in ("predict", "predict_proba"):
        # as_numpy reads JSON data too: check the server really answered in the chosen form.
        output = result.get_output(name)
        assert ("data" in output) is not binary, output
        assert ("binary_data_size" in output.get("parameters", {})) is binary, output
    labels = [
        label.decode() if isinstance(label, bytes) else label
        for label in result.as_numpy("predict").tolist()
    ]
    assert labels == ["setosa", "virginica"]
    assert result.as_numpy("predict_proba").shape == (2, 3)
    client.close()


def test_model_repository_extension(client: TestClient) -> None:
    register_iris(client)
    register_iris(client, name="other")
    state = client.app.state.modelserve  # type: ignore[attr-defined]
    # A new default version is warmed by the registry watcher right after it is registered.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        index = client.post("/v2/repository/index", json={}).json()
        if {m["state"] for m in index} == {"READY"}:
            break
        time.sleep(0.05)
    assert {(m["name"], m["state"]) for m in index} == {("iris", "READY"), ("other", "READY")}
    assert client.post("/v2/repository/models/iris/unload").status_code == 200
    index = client.post("/v2/repository/index", json={}).json()
    assert {(m["name"], m["state"]) for m in index} == {
        ("iris", "UNAVAILABLE"),
        ("other", "READY"),
    }
    loads = state.cache.loads
    assert client.post("/v2/repository/models/iris/load").status_code == 200
    assert state.cache.loads == loads + 1
    ready = client.post("/v2/repository/index", json={"ready": True}).json()
    assert sorted((m["name"], m["version"]) for m in ready) == [("iris", "1"), ("other", "1")]
    assert client.post("/v2/repository/models/nope/load").status_code == 404


@pytest.mark.parametrize(
    ("request_level", "output_parameters", "binary"),
    [
        (True, {"custom": 1}, True),  # parameters without binary_data leave the request's choice
        (True, {"binary_data": False}, False),
        (False, {"binary_data": True}, True),
        (False, {}, False),
    ],
)
def test_binary_output_choice(
    client: TestClient, request_level: bool, output_parameters: dict[str, Any], binary: bool
) -> None:
    register_iris(client)
    body = {
        "inputs": per_feature(),
        "outputs": [{"name": "predict_proba", "parameters": output_parameters}],
        "parameters": {"binary_data_output": request_level},
    }
    response = client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 200, response.text
    assert ("inference-header-content-length" in response.headers) is binary
    if binary:
        size = int(response.headers["inference-header-content-length"])
        [proba] = orjson.loads(response.content[:size])["outputs"]
        values = np.frombuffer(response.content[size:], dtype="<f8")
        assert values.shape == (6,)
        assert proba["parameters"]["binary_data_size"] == 48
    else:
        assert len(response.json()["outputs"][0]["data"]) == 6


def test_the_index_says_why_a_version_failed_to_warm(client: TestClient, db: Database) -> None:
    register_iris(client, alias="production")
    with db.transaction() as session:
        for table in (ModelArtifact, ServingForm):
            session.execute(update(table).values(content=b"tampered"))
    assert client.post("/v2/repository/models/iris/unload").status_code == 200
    register_iris(client, name="other")  # a registry change: every process warms what serves
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        index = {m["name"]: m for m in client.post("/v2/repository/index", json={}).json()}
        # The watcher warms one version after the other: wait for both outcomes.
        if index["iris"]["reason"] != "not loaded" and index["other"]["state"] == "READY":
            break
        time.sleep(0.05)
    assert index["iris"]["state"] == "UNAVAILABLE"
    assert index["iris"]["reason"].startswith("artifact_integrity_error")
    assert index["other"]["state"] == "READY"
