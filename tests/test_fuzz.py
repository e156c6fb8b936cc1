"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (schemathesis).

Every operation gets generated requests, schema-valid ones and (where the operation has any
input) schema-violating ones, sent as an admin through the test client of a started app on which
a real model, an alias, a user, an API key, a login session and a logged prediction exist. Some
cases are steered onto those rows, so that the happy paths answer with real data rather than 404.

Each response must not be a 5xx, must use a status code the operation declares, must have the
declared content type, and its body must match the declared schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from factories import IRIS_FEATURES, PASSWORD, iris_instance, register_iris
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]

FUZZ = settings(
    max_examples=10,  # per operation and generation mode: about 900 requests per backend
    deadline=None,
    # No shrinking: the first failing request is reported as is (schemathesis prints it as a
    # curl command), which keeps a failing run as bounded as a passing one.
    phases=[Phase.explicit, Phase.generate],
    database=None,  # nothing written to .hypothesis/
    suppress_health_check=[HealthCheck.too_slow],
)

CREDENTIAL_HEADERS = ("Authorization", "X-API-Key")
USERNAME = "fuzz-user"

# Feature values for iris instances: mostly ordinary measurements, otherwise a small dictionary
# of awkward ones: JSON numbers at or past the edges of int64 and float64, a value below the
# schema's minimum, and values of the wrong type.
FEATURE_VALUES = st.one_of(
    st.floats(min_value=0, max_value=10),
    st.floats(min_value=0, max_value=10),
    st.floats(min_value=0, max_value=10),
    st.sampled_from([0, 7, -1, 2**63, 2**64, 1e308, 10**400, None, True, "5.1"]),
)
IRIS_INSTANCES = st.lists(
    st.fixed_dictionaries(dict.fromkeys(IRIS_FEATURES, FEATURE_VALUES)), min_size=1, max_size=3
)
# The columnar form, long enough at times (16+ rows) to be checked with numpy.
IRIS_COLUMNAR = st.fixed_dictionaries(
    {
        "columns": st.permutations(IRIS_FEATURES),
        "data": st.lists(
            st.lists(FEATURE_VALUES, min_size=len(IRIS_FEATURES), max_size=len(IRIS_FEATURES)),
            min_size=1,
            max_size=20,
        ),
    }
)


@dataclass(frozen=True)
class World:
    """What exists before fuzzing starts."""

    admin_id: int
    admin_key_id: int
    path_values: dict[str, Any]
    """Path parameter values naming existing rows: the model, its version and alias, a user and
    a key that are not the admin's."""
    refresh_token: str


def arrange(client: TestClient) -> World:
    """Create the rows the fuzzer is steered onto."""
    version = register_iris(client)["version"]
    alias = client.put("/v1/models/iris/aliases/production", json={"version": version})
    assert alias.status_code == 200, alias.text
    user = client.post(
        "/v1/users", json={"username": USERNAME, "email": "fuzz@example.com", "password": PASSWORD}
    )
    assert user.status_code == 201, user.text
    key = client.post(
        "/v1/api-keys",
        json={"name": "fuzz", "user_id": user.json()["id"], "models": ["iris"]},
    )
    assert key.status_code == 201, key.text
    login = client.post("/v1/auth/token", data={"username": USERNAME, "password": PASSWORD})
    assert login.status_code == 200, login.text
    predicted = client.post("/v1/models/iris/predict", json={"instances": [iris_instance()]})
    assert predicted.status_code == 200, predicted.text
    admin_id = client.get("/v1/users/me").json()["id"]
    keys = client.get("/v1/api-keys").json()["data"]
    return World(
        admin_id=admin_id,
        admin_key_id=next(k["id"] for k in keys if k["user_id"] == admin_id),
        path_values={
            "name": "iris",
            "version": version,
            "alias": "production",
            "user_id": user.json()["id"],
            "key_id": key.json()["id"],
        },
        refresh_token=login.json()["refresh_token"],
    )


def locks_out_the_admin(case: Case, world: World) -> bool:
    """Whether ``case`` could revoke, delete, disable or demote the admin whose key every other
    request authenticates with; the fuzzer would then only ever see 401/403 afterwards."""
    params = case.path_parameters or {}
    if case.method == "DELETE" and case.path == "/v1/api-keys/{key_id}":
        return str(params.get("key_id")) == str(world.admin_key_id)
    if case.method in {"PATCH", "DELETE"} and case.path == "/v1/users/{user_id}":
        return str(params.get("user_id")) == str(world.admin_id)
    return False


def steered(operation: APIOperation, mode: GenerationMode, world: World) -> st.SearchStrategy[Case]:
    """Cases for ``operation``, some of them pointed at the existing rows."""
    names = set(re.findall(r"{(\w+)}", operation.path)) & world.path_values.keys()

    @st.composite
    def cases(draw: st.DrawFn) -> Case:
        case: Case = draw(operation.as_strategy(generation_mode=mode))
        # Schemathesis fills the optional credential headers too; usually drop them so the
        # client's admin key is what authenticates, sometimes keep them to fuzz authentication.
        if case.headers and draw(st.integers(0, 3)):
            for header in CREDENTIAL_HEADERS:
                case.headers.pop(header, None)
        if names and draw(st.booleans()):
            existing = {name: world.path_values[name] for name in names}
            case.path_parameters = {**(case.path_parameters or {}), **existing}
        if operation.path.endswith("/predict") and draw(st.booleans()):
            if draw(st.booleans()):
                case.body = {"instances": draw(IRIS_INSTANCES)}
            else:
                case.body = draw(IRIS_COLUMNAR)
        if operation.path == "/v1/auth/token" and draw(st.booleans()):
            case.body = {"username": USERNAME, "password": draw(st.sampled_from([PASSWORD, "no"]))}
        if operation.path in {"/v1/auth/refresh", "/v1/auth/logout"} and draw(st.booleans()):
            case.body = {"refresh_token": world.refresh_token}
        return case

    return cases().filter(lambda case: not locks_out_the_admin(case, world))


def send(client: TestClient, case: Case) -> httpx.Response:
    """Send ``case`` through the test client (the started app, its state and its admin key),
    serialised the way schemathesis serialises it for ``requests``."""
    prepared = requests.Request(**case.as_transport_kwargs(base_url=str(client.base_url))).prepare()
    assert prepared.method is not None
    assert prepared.url is not None
    return client.request(
        prepared.method, prepared.url, headers=dict(prepared.headers), content=prepared.body
    )


def has_input(operation: APIOperation) -> bool:
    """Whether a negative (schema-violating) case can be made for ``operation`` at all."""
    return bool(operation.body) or any(True for _ in operation.iter_parameters())


def test_api_conforms_to_its_schema_under_fuzzing(
    make_client: Any, subtests: pytest.Subtests
) -> None:
    # Open registration, so that POST /v1/auth/register is exercised past its 403.
    with make_client(open_registration=True) as client:
        world = arrange(client)
        schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in GenerationMode:
                if mode is GenerationMode.NEGATIVE and not has_input(operation):
                    continue

                @FUZZ
                @given(case=steered(operation, mode, world))
                def fuzz(case: Case) -> None:
                    case.validate_response(send(client, case), checks=CHECKS)

                with subtests.test(msg=f"{operation.label} ({mode.value})"):
                    fuzz()
