"""ONNX files registered as they are: one converted from scikit-learn with skl2onnx (one
[N, F] input), one from LightGBM with onnxmltools (one input per feature is also covered);
answers equal ONNX Runtime run directly."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
from factories import register
from fastapi.testclient import TestClient
from format_models import instances, schema_of
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROWS = [0, 3, 50, 300]


def sklearn_onnx(frame: pd.DataFrame, target: Any) -> bytes:
    from skl2onnx import to_onnx

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(frame.to_numpy(), target)
    return bytes(to_onnx(model, frame.to_numpy()[:1].astype(np.float32)).SerializeToString())


def lightgbm_onnx(model: Any, width: int) -> bytes:
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    converted = convert_lightgbm(model, initial_types=[("input", FloatTensorType([None, width]))])
    return bytes(converted.SerializeToString())


def per_feature_onnx(frame: pd.DataFrame, target: Any) -> bytes:
    """A graph taking one [N, 1] input per feature, named after it."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.compose import ColumnTransformer

    names = list(frame.columns[:3])
    scale = ColumnTransformer([("scale", StandardScaler(), names)])
    model = make_pipeline(scale, LogisticRegression(max_iter=1000)).fit(frame[names], target)
    initial = [(n, FloatTensorType([None, 1])) for n in names]
    converted = convert_sklearn(model, initial_types=initial)
    return bytes(converted.SerializeToString())


def direct(content: bytes, feeds: dict[str, Any]) -> tuple[list[Any], np.ndarray[Any, Any]]:
    session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    label, proba = session.run(None, feeds)
    if isinstance(proba, list):
        proba = np.array([[row[c] for c in sorted(row)] for row in proba])
    return np.asarray(label).tolist(), np.asarray(proba, dtype=np.float64)


@pytest.mark.parametrize("source", ["sklearn", "lightgbm"])
def test_onnx_file_answers_as_onnx_runtime(
    client: TestClient, fitted: dict[str, Any], data: tuple[pd.DataFrame, Any], source: str
) -> None:
    frame, target = data
    if source == "sklearn":
        content = sklearn_onnx(frame, target)
    else:
        content = lightgbm_onnx(fitted["lightgbm"], frame.shape[1])
    response = register(client, "graph", content, schema_of(frame), filename="model.onnx")
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["format"] == "onnx"
    assert version["output"] == {"task": "classification", "classes": [0, 1], "probabilities": True}
    assert version["onnx_unavailable_reason"] == "the model is an ONNX file already"
    name = onnxruntime.InferenceSession(content).get_inputs()[0].name
    labels, proba = direct(content, {name: frame.iloc[ROWS].to_numpy(dtype=np.float32)})

    v1 = client.post("/v1/models/graph/predict", json={"instances": instances(frame, ROWS)})
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"] == labels
    got = np.array([[p["0"], p["1"]] for p in v1.json()["probabilities"]])
    np.testing.assert_array_equal(got, proba)
    matrix = frame.iloc[ROWS].to_numpy(dtype=float)
    tensor = {"name": "x", "shape": list(matrix.shape), "datatype": "FP64", "data": matrix.tolist()}
    v2 = client.post("/v2/models/graph/infer", json={"inputs": [tensor]})
    assert v2.status_code == 200, v2.text
    predict, probabilities = v2.json()["outputs"]
    assert predict["data"] == labels
    np.testing.assert_array_equal(np.array(probabilities["data"]).reshape(-1, 2), proba)


def test_onnx_file_with_one_input_per_feature_and_schema_from_its_inputs(
    client: TestClient, data: tuple[pd.DataFrame, Any]
) -> None:
    frame, target = data
    content = per_feature_onnx(frame, target)
    names = list(frame.columns[:3])
    response = register(client, "cols", content, None, filename="model.onnx")  # type: ignore[arg-type]
    assert response.status_code == 201, response.text
    assert response.json()["input_schema_source"] == "feature_names"
    assert [f["name"] for f in response.json()["input_schema"]["features"]] == names
    rows = frame.iloc[ROWS][names]
    feeds = {n: rows[[n]].to_numpy(dtype=np.float32) for n in names}
    labels, proba = direct(content, feeds)
    v1 = client.post(
        "/v1/models/cols/predict", json={"instances": instances(rows, list(range(len(ROWS))))}
    )
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"] == labels
    np.testing.assert_array_equal(
        np.array([[p["0"], p["1"]] for p in v1.json()["probabilities"]]), proba
    )


def test_onnx_custom_operator_refused(client: TestClient, data: tuple[pd.DataFrame, Any]) -> None:
    frame, _ = data
    node = onnx.helper.make_node("Evil", ["x"], ["y"], domain="com.example")
    graph = onnx.helper.make_graph(
        [node],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 30])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 1])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    response = register(
        client, "evil", model.SerializeToString(), schema_of(frame), filename="m.onnx"
    )
    assert response.status_code == 422, response.text
    assert response.json()["details"] == {"domains": ["com.example"]}


def test_onnx_inputs_not_matching_the_schema(
    client: TestClient, data: tuple[pd.DataFrame, Any]
) -> None:
    frame, target = data
    content = sklearn_onnx(frame, target)
    schema = {"features": [{"name": "a", "type": "number"}, {"name": "b", "type": "number"}]}
    response = register(client, "narrow", content, schema, filename="model.onnx")
    assert response.status_code == 422, response.text
    assert "30 features" in response.json()["message"] or "30 features" in str(
        response.json()["details"]
    )
