"""Every way a request can carry a numeric model's inputs gives scikit-learn's own answers, bit
for bit, and the log reads back the values each request carried; the matrix route of
``inference.intake`` builds exactly what the value-by-value validator builds, and refuses
exactly what it refuses."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from factories import register, to_bytes
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from modelserve.core.errors import ValidationFailed
from modelserve.inference.body_matrix import columnar_matrix, float_tensor_request
from modelserve.inference.intake import MatrixPayload, fast_batch, numeric_rules, validate
from modelserve.inference.validation import CompiledValidator
from modelserve.registry.schemas import InputSchema

ROWS = 40  # above the validator's vectorised threshold; 1 row stays below it


def dataset() -> tuple[list[str], np.ndarray, np.ndarray]:
    data = load_breast_cancer()
    names = [f"f{i}" for i in range(data.data.shape[1])]
    matrix = data.data.copy()
    matrix[:, 0] = np.round(matrix[:, 0])  # an integer feature
    return names, matrix, data.target


def schema_json(names: list[str]) -> dict[str, Any]:
    features: list[dict[str, Any]] = [{"name": names[0], "type": "integer", "minimum": 0}]
    features += [{"name": n, "type": "number"} for n in names[1:]]
    return {"features": features}


MODELS = {
    "logreg": lambda: Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]),
    "hgb": lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0),
}


@pytest.fixture(params=sorted(MODELS))
def served(request: pytest.FixtureRequest, client: TestClient) -> tuple[Any, np.ndarray]:
    names, matrix, target = dataset()
    estimator = MODELS[request.param]().fit(matrix, target)
    response = register(client, "m", to_bytes(estimator, "joblib"), schema_json(names), "m.joblib")
    assert response.status_code == 201, response.text
    return estimator, matrix


def records(names: list[str], rows: np.ndarray) -> dict[str, Any]:
    instances = [dict(zip(names, row, strict=True)) for row in rows.tolist()]
    instances[0][names[0]] = int(instances[0][names[0]])  # an integer sent as one
    return {"instances": instances}


def columnar(names: list[str], rows: np.ndarray, reverse: bool = False) -> dict[str, Any]:
    order = names[::-1] if reverse else names
    data = [[row[names.index(n)] for n in order] for row in rows.tolist()]
    return {"columns": order, "data": data}


def v2_tensor(rows: np.ndarray, nested: bool) -> dict[str, Any]:
    data = rows.tolist() if nested else rows.ravel().tolist()
    tensor = {"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": data}
    return {"inputs": [tensor], "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}


def v2_per_feature(names: list[str], rows: np.ndarray) -> dict[str, Any]:
    inputs = [
        {"name": n, "shape": [len(rows)], "datatype": "FP64", "data": rows[:, i].tolist()}
        for i, n in enumerate(names)
    ]
    inputs[0] = {
        "name": names[0],
        "shape": [len(rows)],
        "datatype": "INT32",
        "data": [int(v) for v in rows[:, 0]],
    }
    return {"inputs": inputs}


def post_binary(client: TestClient, rows: np.ndarray, datatype: str) -> Any:
    blob = rows.astype("<f8" if datatype == "FP64" else "<f4").tobytes()
    tensor = {
        "name": "x",
        "shape": list(rows.shape),
        "datatype": datatype,
        "parameters": {"binary_data_size": len(blob)},
    }
    header = orjson.dumps({"inputs": [tensor]})
    return client.post(
        "/v2/models/m/infer",
        content=header + blob,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )


def v2_answer(response: Any) -> tuple[list[Any], np.ndarray]:
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    proba = outputs["predict_proba"]
    return outputs["predict"]["data"], np.array(proba["data"]).reshape(proba["shape"])


def v1_answer(response: Any) -> tuple[list[Any], np.ndarray]:
    assert response.status_code == 200, response.text
    body = response.json()
    return body["predictions"], np.array([[p["0"], p["1"]] for p in body["probabilities"]])


def logged(client: TestClient, count: int) -> list[Any]:
    rows = client.get("/v1/predictions", params={"limit": count}).json()["data"]
    return [row["inputs"] for row in reversed(rows)]


@pytest.mark.parametrize("n_rows", [1, ROWS])
def test_every_form_answers_as_scikit_learn_bit_for_bit(
    client: TestClient, served: tuple[Any, np.ndarray], n_rows: int
) -> None:
    estimator, matrix = served
    names = [f"f{i}" for i in range(matrix.shape[1])]
    rows = matrix[100 : 100 + n_rows]
    want_labels = estimator.predict(rows).tolist()
    want_proba = estimator.predict_proba(rows)
    sent: list[Any] = []
    for body in (records(names, rows), columnar(names, rows), columnar(names, rows, True)):
        sent.append(body.get("instances", body))
        got = v1_answer(client.post("/v1/models/m/predict", json=body))
        assert got[0] == want_labels
        assert np.array_equal(got[1], want_proba)  # bit-identical, not close
    as_logged = {"columns": names, "data": rows.tolist()}
    for body in (v2_tensor(rows, nested=True), v2_tensor(rows, nested=False)):
        sent.append(as_logged)
        got = v2_answer(client.post("/v2/models/m/infer", json=body))
        assert got[0] == want_labels
        assert np.array_equal(got[1], want_proba)
    got = v2_answer(client.post("/v2/models/m/infer", json=v2_per_feature(names, rows)))
    sent.append({"columns": names, "data": [[int(r[0]), *r[1:]] for r in rows.tolist()]})
    assert np.array_equal(got[1], want_proba)
    got = v2_answer(post_binary(client, rows, "FP64"))
    sent.append(as_logged)
    assert np.array_equal(got[1], want_proba)
    # FP32 carries the float32 values; scikit-learn is given them as float64
    rounded = rows.astype(np.float32).astype(np.float64)
    got = v2_answer(post_binary(client, rows, "FP32"))
    sent.append({"columns": names, "data": rounded.tolist()})
    assert np.array_equal(got[1], estimator.predict_proba(rounded))
    assert logged(client, len(sent)) == sent


def first_rows(served: tuple[Any, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """The feature names and a copy of the first ``ROWS`` rows, to spoil."""
    _, matrix = served
    return [f"f{i}" for i in range(matrix.shape[1])], matrix[:ROWS].copy()


def test_a_bad_value_gets_the_same_refusal_in_every_form(
    client: TestClient, served: tuple[Any, np.ndarray]
) -> None:
    names, rows = first_rows(served)
    rows[3, 0] = 2.5  # not an integer
    rows[7, 0] = -1.0  # below the minimum
    problems = []
    for body in (records(names, rows), columnar(names, rows)):
        response = client.post("/v1/models/m/predict", json=body)
        assert response.status_code == 422, response.text
        problems.append([(d["row"], d["feature"], d["type"]) for d in response.json()["details"]])
    response = client.post("/v2/models/m/infer", json=v2_tensor(rows, nested=True))
    assert response.status_code == 400, response.text  # V2 answers 400 for any bad input
    problems.append([(d["row"], d["feature"], d["type"]) for d in response.json()["details"]])
    assert problems == [[(3, "f0", "wrong_type"), (7, "f0", "out_of_range")]] * 3


SCHEMA = InputSchema.model_validate(
    {
        "features": [
            {"name": "i", "type": "integer", "minimum": -5, "maximum": 2**60},
            {"name": "x", "type": "number", "nullable": True},
            {"name": "y", "type": "number", "maximum": 1e300},
        ]
    }
)
EDGE_VALUES = [0, -0.0, 1, 2**53 + 1, 2**60, 0.1, 1e-310, -1e18, 5e-324, 3]


def payloads(count: int, seed: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        i = int(rng.choice([0, 1, -5, 2**53 + 1, 2**60, 7]))
        x = EDGE_VALUES[int(rng.integers(len(EDGE_VALUES)))]
        y = float(rng.normal()) * 10.0 ** int(rng.integers(-300, 300))
        rows.append([i if rng.random() < 0.5 else float(i), x, y])
    instances = [dict(zip(["i", "x", "y"], row, strict=True)) for row in rows]
    return [
        {"instances": instances},
        {"columns": ["i", "x", "y"], "data": rows},
        {"columns": ["y", "i", "x"], "data": [[r[2], r[0], r[1]] for r in rows]},
    ]


@pytest.mark.parametrize("count", [1, 3, 16, 40])
def test_the_matrix_route_builds_what_the_validator_builds(count: int) -> None:
    rules = numeric_rules(SCHEMA)
    assert rules is not None
    validator = CompiledValidator(SCHEMA, max_rows=100)
    taken = 0
    for seed in range(5):
        for payload in payloads(count, seed):
            fast = fast_batch(rules, validator, payload)
            if fast is None:  # left to the validator (an integer beside a huge number)
                continue
            taken += 1
            slow = validator.validate(payload)
            assert fast.matrix is not None
            assert fast.n_rows == slow.n_rows
            assert fast.log_safe == slow.log_safe
            for name in SCHEMA.names:
                # same bits (including the sign of zero), not merely equal values
                assert fast.columns[name].tobytes() == slow.columns[name].tobytes()
    assert taken >= 6


BAD_PAYLOADS: list[Any] = [
    {"instances": [{"i": 1.5, "x": 0.0, "y": 1.0}]},
    {"instances": [{"i": -6, "x": 0.0, "y": 1.0}]},
    {"instances": [{"i": 1, "x": None, "y": 1.0}]},  # allowed: nullable
    {"instances": [{"i": 1, "x": 0.0, "y": 2e300}]},
    {"instances": [{"i": 1, "x": 0.0, "y": True}]},
    {"instances": [{"i": 1, "x": 0.0}]},
    {"instances": [{"i": 1, "x": 0.0, "y": 1.0, "z": 2}]},
    {"instances": [{"i": 2**70, "x": 0.0, "y": 1.0}]},
    {"instances": []},
    {"columns": ["i", "x", "y"], "data": [[1, 0.0, "1"]]},
    {"columns": ["i", "x", "x"], "data": [[1, 0.0, 1.0]]},
    {"columns": ["i", "x", "y"], "data": [[1, 0.0]]},
    {"columns": ["i", "x", "y"], "data": [[1, 0.0, [1.0]]]},
    {"columns": ["i", "x", "y"], "data": [[1, 0.0, 1.0]] * 101},
    {"columns": ["i", "x", "y"], "data": [[1, 0.0, 1.0]], "extra": 1},
]


@pytest.mark.parametrize("payload", BAD_PAYLOADS, ids=range(len(BAD_PAYLOADS)))
def test_what_the_matrix_route_does_not_take_the_validator_answers(payload: Any) -> None:
    rules = numeric_rules(SCHEMA)
    assert rules is not None
    validator = CompiledValidator(SCHEMA, max_rows=100)
    assert fast_batch(rules, validator, payload) is None
    assert outcome(lambda: validate(validator, payload, rules)) == outcome(
        lambda: validator.validate(payload)
    )


def outcome(run: Any) -> Any:
    """A batch's columns as bytes, or the error envelope it was refused with."""
    try:
        batch = run()
    except ValidationFailed as exc:
        return exc.to_body().model_dump()
    return {name: column.tobytes() for name, column in batch.columns.items()}


def test_schemas_with_other_types_have_no_matrix_rules() -> None:
    schema = InputSchema.model_validate(
        {"features": [{"name": "a", "type": "number"}, {"name": "b", "type": "boolean"}]}
    )
    assert numeric_rules(schema) is None


@pytest.mark.parametrize("count", [1, 3, 16, 40, 101])
def test_a_matrix_payload_is_validated_as_the_columnar_payload_it_stands_for(count: int) -> None:
    # What V2 float tensors become (no Python object per value): the same batch, or the same
    # refusal, as the columnar payload of the same values; the log's text of it reads back
    # as that payload.
    rules = numeric_rules(SCHEMA)
    assert rules is not None
    validator = CompiledValidator(SCHEMA, max_rows=100)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        matrix = np.array(
            [
                [float(rng.choice([0, 1, -5, 2**53, 7, 1.5, -6])), x, 1e299 * rng.normal()]
                for x in rng.choice([0.1, -0.0, 5e-324, np.nan], size=count)
            ]
        )
        payload = MatrixPayload(["i", "x", "y"], matrix)
        columnar = payload.columnar()
        logged, encoding = payload.logged()
        assert encoding is None
        assert orjson.loads(orjson.dumps(logged)) == columnar or np.isnan(matrix).any()
        assert outcome(lambda p=payload: validate(validator, p, rules)) == outcome(
            lambda c=columnar: validate(validator, c, rules)
        )


def test_binary_values_the_matrix_refuses_get_the_same_problems_as_json(
    client: TestClient, served: tuple[Any, np.ndarray]
) -> None:
    names, rows = first_rows(served)
    rows[2, 5] = np.nan
    rows[4, 0] = 2.5  # not an integer
    as_json = client.post("/v1/models/m/predict", content=json.dumps(columnar(names, rows)))
    assert as_json.status_code == 422, as_json.text
    for datatype in ("FP64", "FP32"):
        response = post_binary(client, rows, datatype)
        assert response.status_code == 400, response.text
        assert response.json()["details"] == as_json.json()["details"]


def spelled_out(body: bytes, name: bytes) -> bytes:
    """``body`` with the first character of the string ``name`` written as an escape: the same
    request, which ``body_matrix`` leaves to the general path."""
    escaped = b'"' + b"\\u%04x" % name[0] + name[1:] + b'"'
    return body.replace(b'"' + name + b'"', escaped, 1)


def without_ids(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("id", "request_id", "latency_ms")}


def test_the_fast_read_answers_refuses_and_logs_as_the_general_path(
    client: TestClient, served: tuple[Any, np.ndarray]
) -> None:
    names, rows = first_rows(served)
    good = columnar(names, rows[:20])
    good["data"][0][0] = int(good["data"][0][0])  # an integer sent as one
    bad = columnar(names, rows[:20])
    bad["data"][1][0], bad["data"][2][0] = 2.5, -1
    warned = columnar(names, rows[:20])
    warned["data"][3][4] = 1e18  # far outside the training range: served with a warning
    v2_good = v2_tensor(rows[:20], nested=True)
    v2_good["inputs"][0]["data"][0][0] = int(rows[0, 0])
    v2_bad = v2_tensor(rows[:20], nested=False)
    v2_bad["inputs"][0]["data"][0] = -1
    cases = [
        ("/v1/models/m/predict", good, b"f1"),
        ("/v1/models/m/predict", columnar(names, rows[:20], reverse=True), b"f1"),
        ("/v1/models/m/predict", bad, b"f1"),
        ("/v1/models/m/predict", warned, b"f1"),
        ("/v2/models/m/infer", v2_good, b"x"),
        ("/v2/models/m/infer", v2_bad, b"x"),
    ]
    for path, payload, name in cases:
        fast = orjson.dumps(payload)
        general = spelled_out(fast, name)
        if path.startswith("/v1"):
            assert columnar_matrix(fast) is not None
            assert columnar_matrix(general) is None
        else:
            assert float_tensor_request(fast) is not None
            assert float_tensor_request(general) is None
        answers = [client.post(path, content=body) for body in (fast, general)]
        assert answers[0].status_code == answers[1].status_code
        assert without_ids(answers[0].json()) == without_ids(answers[1].json())
        entries = client.get("/v1/predictions", params={"limit": 2}).json()["data"]
        general_entry, fast_entry = (without_ids(e) | {"created_at": 0} for e in entries)
        # the very JSON: integers read back as integers
        assert orjson.dumps(fast_entry) == orjson.dumps(general_entry)
