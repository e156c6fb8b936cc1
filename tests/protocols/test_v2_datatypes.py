"""V2 inputs of every kind a schema has (number, integer, boolean, category), sent with the
datatypes clients use for them, as JSON and as binary tensors: the same answers as /v1."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from factories import bytes_tensor, mixed_csv, register
from fastapi.testclient import TestClient

from modelserve.registry.loaders import dump_skops
from modelserve.training.pipeline import train

ROWS: list[dict[str, Any]] = [
    {"income": 61_000.5, "age": 34, "member": True, "region": "south"},
    {"income": 38_250.0, "age": 71, "member": False, "region": "north"},
    {"income": 52_000.0, "age": 18, "member": True, "region": "east"},
]
DATATYPES = {"income": "FP64", "age": "INT64", "member": "BOOL", "region": "BYTES"}


@pytest.fixture
def churn(client: TestClient, tmp_path: Path) -> list[Any]:
    """A pipeline trained on a number, an integer, a boolean and a category; its /v1 answers."""
    frame = pd.read_csv(mixed_csv(tmp_path / "churn.csv"))
    integer_age = {"features": [{"name": "age", "type": "integer"}]}  # inferred: number
    trained = train(frame, "churn", algorithm="logistic", folds=2, overrides=integer_age)
    schema = trained.input_schema.model_dump(mode="json")
    assert register(client, "churn", dump_skops(trained.estimator), schema).status_code == 201
    answer = client.post("/v1/models/churn/predict", json={"instances": ROWS})
    assert answer.status_code == 200, answer.text
    predictions: list[Any] = answer.json()["predictions"]
    return predictions


def per_feature(datatypes: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "shape": [len(ROWS), 1],
            "datatype": datatype,
            "data": [[row[name]] for row in ROWS],
        }
        for name, datatype in datatypes.items()
    ]


def labels(answer: dict[str, Any]) -> list[Any]:
    [predict] = [o for o in answer["outputs"] if o["name"] == "predict"]
    return list(predict["data"])


def test_metadata_names_each_feature_with_its_datatype(
    client: TestClient, churn: list[Any]
) -> None:
    inputs = client.get("/v2/models/churn").json()["inputs"]
    assert {i["name"]: (i["datatype"], i["shape"]) for i in inputs} == {
        name: (datatype, [-1]) for name, datatype in DATATYPES.items()
    }


@pytest.mark.parametrize(
    "integer", ["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]
)
def test_every_integer_datatype_serves_an_integer_feature(
    client: TestClient, churn: list[Any], integer: str
) -> None:
    inputs = per_feature({**DATATYPES, "age": integer, "income": "FP32"})
    response = client.post("/v2/models/churn/infer", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    assert labels(response.json()) == churn


def test_a_number_sent_for_an_integer_feature_is_refused(
    client: TestClient, churn: list[Any]
) -> None:
    inputs = per_feature({**DATATYPES, "age": "FP64"})
    inputs[1]["data"] = [[34.5], [71.0], [18.0]]
    response = client.post("/v2/models/churn/infer", json={"inputs": inputs})
    assert response.status_code == 400
    body = response.json()
    assert body["error"]
    assert [(d["row"], d["feature"]) for d in body["details"]] == [(0, "age")]


def _binary_tensor(name: str, datatype: str, values: list[Any]) -> tuple[dict[str, Any], bytes]:
    if datatype == "BYTES":
        blob = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
    else:
        numpy_type = {"FP64": "<f8", "INT32": "<i4", "BOOL": "?"}[datatype]
        blob = np.asarray(values, dtype=numpy_type).tobytes()
    meta = {
        "name": name,
        "shape": [len(values)],
        "datatype": datatype,
        "parameters": {"binary_data_size": len(blob)},
    }
    return meta, blob


def test_binary_inputs_of_every_kind(client: TestClient, churn: list[Any]) -> None:
    datatypes = {**DATATYPES, "age": "INT32"}
    tensors = [_binary_tensor(n, d, [row[n] for row in ROWS]) for n, d in datatypes.items()]
    header = orjson.dumps(
        {
            "inputs": [meta for meta, _ in tensors],
            "outputs": [{"name": "predict"}],
            "parameters": {"binary_data_output": True},
        }
    )
    response = client.post(
        "/v2/models/churn/infer",
        content=header + b"".join(blob for _, blob in tensors),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    size = int(response.headers["inference-header-content-length"])
    [predict] = orjson.loads(response.content[:size])["outputs"]
    # The request-level binary_data_output makes every output binary.
    assert "data" not in predict
    blob = response.content[size:]
    assert len(blob) == predict["parameters"]["binary_data_size"]
    got = bytes_tensor(blob)
    assert got == [str(label) for label in churn]
