"""The Open Inference Protocol (V2) REST API driven by a second, independent third-party client.

``open-inference-openapi`` (PyPI, from github.com/open-inference/python-clients) is the REST client
generated from the Open Inference Protocol working group's OpenAPI definition. It builds the
requests, makes the HTTP calls itself (httpx) and parses the answers into its own models, so the
server is checked against the protocol as written rather than against our own idea of it.
Predictions are compared with the same fitted estimator run locally.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from factories import IRIS_FEATURES, fit_iris, iris_frame, iris_schema, to_bytes
from open_inference.openapi import (
    InferenceRequest,
    InferenceResponse,
    NotFoundError,
    RequestInput,
    RequestOutput,
    ResponseOutput,
)
from open_inference.openapi.client import AsyncOpenInferenceClient, OpenInferenceClient
from open_inference.openapi.core.api_error import ApiError
from sklearn.linear_model import LogisticRegression

pytestmark = pytest.mark.slow

# Every 7th iris row: all three species, including rows near the class boundaries.
MATRIX = iris_frame()[IRIS_FEATURES].to_numpy(dtype=np.float64)[::7]


@pytest.fixture
def iris(server: tuple[str, dict[str, str]]) -> Iterator[tuple[OpenInferenceClient, Any]]:
    """The iris model registered on a real server process; the client and the local estimator."""
    base, auth = server
    estimator = fit_iris()
    meta = {"name": "iris", "input_schema": iris_schema(), "alias": "production"}
    created = httpx.post(
        f"{base}/v1/models",
        headers=auth,
        timeout=30,
        data={"metadata": orjson.dumps(meta).decode()},
        files={"file": ("iris.skops", to_bytes(estimator, "skops"))},
    )
    assert created.status_code == 201, created.text
    with httpx.Client(headers=auth, timeout=30) as session:
        yield OpenInferenceClient(base_url=base, httpx_client=session), estimator


def per_feature(matrix: np.ndarray) -> list[RequestInput]:
    return [
        RequestInput(name=name, shape=[len(matrix)], datatype="FP64", data=matrix[:, i].tolist())
        for i, name in enumerate(IRIS_FEATURES)
    ]


def tensor(matrix: np.ndarray, flat: bool = False) -> list[RequestInput]:
    data = matrix.ravel().tolist() if flat else matrix.tolist()
    return [RequestInput(name="input-0", shape=list(matrix.shape), datatype="FP64", data=data)]


def as_array(output: ResponseOutput) -> np.ndarray:
    """An output's data (flat or nested, as the protocol allows) in its declared shape."""
    return np.asarray(output.dict()["data"]).reshape(output.shape)


def outputs_by_name(response: InferenceResponse) -> dict[str, ResponseOutput]:
    return {output.name: output for output in response.outputs}


def check_predictions(
    response: InferenceResponse, estimator: LogisticRegression, matrix: np.ndarray
) -> None:
    outputs = outputs_by_name(response)
    assert list(outputs) == ["predict", "predict_proba"]
    predict, proba = outputs["predict"], outputs["predict_proba"]
    assert (predict.datatype, predict.shape) == ("BYTES", [len(matrix)])
    assert as_array(predict).tolist() == estimator.predict(matrix).tolist()
    assert (proba.datatype, proba.shape) == ("FP64", [len(matrix), 3])
    np.testing.assert_allclose(as_array(proba), estimator.predict_proba(matrix), rtol=1e-9)


def test_health_and_metadata(iris: tuple[OpenInferenceClient, Any]) -> None:
    client, estimator = iris
    client.check_server_liveness()  # each raises unless the server answers 2xx
    client.check_server_readiness()
    client.check_model_readiness(model_name="iris")
    client.check_model_version_readiness(model_name="iris", model_version="1")
    server = client.read_server_metadata()
    assert server.name == "modelserve"
    assert "binary_tensor_data" in (server.extensions or [])
    for meta in (
        client.read_model_metadata(model_name="iris"),
        client.read_model_version_metadata(model_name="iris", model_version="1"),
    ):
        assert (meta.name, meta.versions, meta.platform) == ("iris", ["1"], "scikit-learn")
        assert [(i.name, i.datatype, i.shape) for i in meta.inputs or []] == [
            (name, "FP64", [-1]) for name in IRIS_FEATURES
        ]
        assert [(o.name, o.datatype, o.shape) for o in meta.outputs or []] == [
            ("predict", "BYTES", [-1]),
            ("predict_proba", "FP64", [-1, len(estimator.classes_)]),
        ]


@pytest.mark.parametrize(
    "inputs",
    [per_feature(MATRIX), tensor(MATRIX), tensor(MATRIX, flat=True)],
    ids=["per-feature", "tensor", "tensor-flat"],
)
def test_infer_matches_local_sklearn(
    iris: tuple[OpenInferenceClient, Any], inputs: list[RequestInput]
) -> None:
    client, estimator = iris
    response = client.model_infer(
        model_name="iris", request=InferenceRequest(id="oip-1", inputs=inputs)
    )
    assert (response.model_name, response.model_version, response.id) == ("iris", "1", "oip-1")
    check_predictions(response, estimator, MATRIX)
    pinned = client.model_version_infer(
        model_name="iris", model_version="1", request=InferenceRequest(inputs=inputs)
    )
    assert pinned.model_version == "1"
    assert pinned.id  # the server makes one up when the request has none
    check_predictions(pinned, estimator, MATRIX)


def test_requested_output_only(iris: tuple[OpenInferenceClient, Any]) -> None:
    client, estimator = iris
    request = InferenceRequest(inputs=tensor(MATRIX), outputs=[RequestOutput(name="predict_proba")])
    response = client.model_infer(model_name="iris", request=request)
    assert list(outputs_by_name(response)) == ["predict_proba"]
    np.testing.assert_allclose(
        as_array(response.outputs[0]), estimator.predict_proba(MATRIX), rtol=1e-9
    )


def test_errors_surface_through_the_client(
    iris: tuple[OpenInferenceClient, Any], server: tuple[str, dict[str, str]]
) -> None:
    client, _ = iris
    request = InferenceRequest(inputs=tensor(MATRIX))
    with pytest.raises(ApiError) as unknown:
        client.model_infer(model_name="no-such-model", request=request)
    assert unknown.value.status_code == 404
    assert unknown.value.body["error"]
    with pytest.raises(ApiError) as unknown_meta:
        client.read_model_metadata(model_name="no-such-model")
    assert unknown_meta.value.status_code == 404
    with pytest.raises(NotFoundError):
        client.check_model_readiness(model_name="no-such-model")
    with pytest.raises(NotFoundError):
        client.check_model_version_readiness(model_name="iris", model_version="2")
    # Three features where the model wants four: an inference error is a 400 with a message.
    with pytest.raises(ApiError) as bad:
        client.model_infer(
            model_name="iris", request=InferenceRequest(inputs=tensor(MATRIX[:, :3]))
        )
    assert bad.value.status_code == 400
    assert bad.value.body["error"]
    # Without credentials the client gets (and raises) a 401.
    base, _ = server
    with httpx.Client(timeout=30) as anonymous, pytest.raises(ApiError) as denied:
        OpenInferenceClient(base_url=base, httpx_client=anonymous).model_infer(
            model_name="iris", request=request
        )
    assert denied.value.status_code == 401


def test_async_client_concurrent_requests(
    iris: tuple[OpenInferenceClient, Any], server: tuple[str, dict[str, str]]
) -> None:
    _, estimator = iris
    base, auth = server
    batches = [MATRIX[i::4] for i in range(4)]

    async def run() -> list[InferenceResponse]:
        async with httpx.AsyncClient(headers=auth, timeout=30) as session:
            client = AsyncOpenInferenceClient(base_url=base, httpx_client=session)
            await client.check_server_liveness()
            return await asyncio.gather(
                *(
                    client.model_infer(
                        model_name="iris",
                        request=InferenceRequest(id=f"batch-{i}", inputs=per_feature(batch)),
                    )
                    for i, batch in enumerate(batches)
                )
            )

    responses = asyncio.run(run())
    assert [r.id for r in responses] == [f"batch-{i}" for i in range(4)]
    for response, batch in zip(responses, batches, strict=True):
        check_predictions(response, estimator, batch)
