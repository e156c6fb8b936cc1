"""The OpenAPI schema declares the one error envelope on every error response."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def test_every_error_response_uses_the_envelope(client: TestClient) -> None:
    schema: dict[str, Any] = client.get("/openapi.json").json()
    assert set(schema["components"]["schemas"]["ErrorBody"]["properties"]) == {
        "code",
        "message",
        "details",
    }
    checked = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                # The Open Inference Protocol answers "not ready" as 503 {"ready": false}.
                spec_ready = path.startswith("/v2") and path.endswith("ready") and status == "503"
                if status.startswith(("4", "5")) and not spec_ready:
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (path, method, status)
                    checked += 1
    assert checked > 20
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    predict = schema["paths"]["/v1/models/{name}/predict"]["post"]
    forms = predict["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert [sorted(form["required"]) for form in forms] == [["instances"], ["columns", "data"]]


def test_docs_can_be_switched_off(make_client: Any) -> None:
    with make_client(docs_enabled=False) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/openapi.json").status_code == 404


def test_prediction_routes_declare_the_same_security_as_the_rest(client: TestClient) -> None:
    # The prediction routes authenticate in one dependency of their own (the hot path) and state
    # their security by hand; it must match what FastAPI derives for every other route.
    paths: dict[str, Any] = client.get("/openapi.json").json()["paths"]
    expected = paths["/v1/models"]["get"]["security"]
    assert expected
    hot = [
        (path, operation)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if method == "post" and path.endswith(("/predict", "/infer"))
    ]
    assert len(hot) == 5
    for path, operation in hot:
        assert operation["security"] == expected, path
        anonymous = client.post(
            path.replace("{name}", "m").replace("{version}", "1").replace("{alias}", "a"),
            headers={"X-API-Key": ""},
            json={},
        )
        assert anonymous.status_code == 401, (path, anonymous.text)
