"""The columnar request form, ``{"columns": [...], "data": [[...], ...]}``: the same answers and
the same problems as the records form, over HTTP and through the validator."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from factories import IRIS_FEATURES, iris_frame, mixed_csv, register, register_iris
from fastapi.testclient import TestClient

from modelserve.core.errors import ValidationFailed
from modelserve.core.http import parse_json_text
from modelserve.inference.service import loggable
from modelserve.inference.validation import (
    MAX_REPORTED_PROBLEMS,
    VECTOR_MIN_ROWS,
    CompiledValidator,
    ValidatedBatch,
)
from modelserve.registry.loaders import dump_skops
from modelserve.registry.schemas import InputSchema
from modelserve.training.pipeline import train

FRAME = iris_frame()


def iris_rows(count: int, start: int = 0) -> list[list[float]]:
    return [[float(FRAME.iloc[(start + i) % 150][f]) for f in IRIS_FEATURES] for i in range(count)]


def as_instances(columns: list[str], data: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in data]


def predict(client: TestClient, body: Any, model: str = "iris") -> Any:
    response = client.post(f"/v1/models/{model}/predict", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def problems_of(client: TestClient, body: Any) -> list[tuple[Any, Any, str]]:
    response = client.post("/v1/models/iris/predict", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    return [(p["row"], p["feature"], p["type"]) for p in response.json()["details"]]


def strip_ids(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "request_id"}


@pytest.mark.parametrize("count", [1, 3, 100])
def test_same_answers_as_records_in_any_column_order(client: TestClient, count: int) -> None:
    register_iris(client)
    data = iris_rows(count, start=17)
    records = predict(client, {"instances": as_instances(IRIS_FEATURES, data)})
    columnar = predict(client, {"columns": IRIS_FEATURES, "data": data})
    assert strip_ids(columnar) == strip_ids(records)
    order = [2, 0, 3, 1]
    shuffled = {
        "columns": [IRIS_FEATURES[i] for i in order],
        "data": [[row[i] for i in order] for row in data],
    }
    assert strip_ids(predict(client, shuffled)) == strip_ids(records)


def test_mixed_types_and_nulls_give_the_same_answers(client: TestClient, tmp_path: Path) -> None:
    """A trained pipeline on a DataFrame: nullable number, integer, boolean, nullable category."""
    frame = pd.read_csv(mixed_csv(tmp_path / "churn.csv"))
    frame.loc[::11, "region"] = None
    trained = train(frame, "churn", algorithm="gradient_boosting", folds=2)
    schema = trained.input_schema.model_dump(mode="json")
    response = register(client, "churn", dump_skops(trained.estimator), schema)
    assert response.status_code == 201, response.text
    names = [f["name"] for f in schema["features"]]
    rng = np.random.default_rng(3)
    instances = [
        {
            "income": None if i % 9 == 0 else round(float(rng.normal(50_000, 20_000)), 2),
            "age": int(rng.integers(18, 80)),
            "member": bool(i % 2),
            "region": None if i % 7 == 0 else ["east", "north", "south"][i % 3],
        }
        for i in range(40)
    ]
    for rows in (instances[:1], instances[:5], instances):  # one by one, and numpy
        records = predict(client, {"instances": rows}, "churn")
        columns = list(reversed(names))
        data = [[row[c] for c in columns] for row in rows]
        columnar = predict(client, {"columns": columns, "data": data}, "churn")
        assert strip_ids(columnar) == strip_ids(records)
    local = pd.DataFrame(instances, columns=names).astype(
        {"income": float, "age": float, "member": float}
    )
    expected = trained.estimator.predict(local)
    assert records["predictions"] == expected.tolist()


def test_columnar_requests_are_logged_as_sent(client: TestClient) -> None:
    register_iris(client)
    body = {"columns": IRIS_FEATURES, "data": iris_rows(2)}
    answer = predict(client, body)
    nullable_nan = {"columns": IRIS_FEATURES, "data": [[math.nan, 3.5, 1.4, 0.2]]}
    refused = client.post("/v1/models/iris/predict", content=json.dumps(nullable_nan).encode())
    assert refused.status_code == 422
    newest, oldest = client.get("/v1/predictions").json()["data"]
    assert oldest["request_id"] == answer["request_id"]
    assert oldest["inputs"] == body
    assert oldest["n_rows"] == 2
    assert newest["inputs"] == {"columns": IRIS_FEATURES, "data": [["nan", 3.5, 1.4, 0.2]]}


def test_a_columnar_body_is_logged_as_the_text_it_came_in(client: TestClient) -> None:
    # Logged as its own JSON text (not encoded again): pretty-printed, with line breaks and
    # numbers spelled in other ways, it still reads back as the values it carried.
    register_iris(client)
    text = (
        '{\r\n  "columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"],\n'
        '  "data": [[5.1, 3.5E0, 14e-1, 0.20],\n\t[6, 2.9, 4.5, 1.5]]\n}\n'
    )
    response = client.post("/v1/models/iris/predict", content=text.encode())
    assert response.status_code == 200, response.text
    [entry] = client.get("/v1/predictions").json()["data"]
    assert entry["inputs"] == json.loads(text)
    assert entry["outputs"]["predictions"] == response.json()["predictions"]


@pytest.mark.parametrize(
    "text",
    [b'{\n"a": [1,\r\n2]}', b'{"a": "x\\u0000"}', b'{"a": NaN}', b'  {"a": 1.5}  '],
    ids=["line breaks", "NUL", "NaN", "spaces"],
)
def test_the_log_keeps_a_body_as_it_came_only_when_every_store_can(text: bytes) -> None:
    value, kept = parse_json_text(text)
    assert value == json.loads(text)
    if b"NaN" in text or b"u0000" in text:
        assert kept is None  # encoded (and escaped) from the parsed value instead
    else:
        assert kept is not None
        assert b"\n" not in kept
        assert b"\r" not in kept
        assert json.loads(kept) == value


GOOD = [5.1, 3.5, 1.4, 0.2]

BAD_BODIES: list[tuple[str, Any, list[tuple[Any, Any, str]]]] = [
    (
        "unknown column",
        {"columns": [*IRIS_FEATURES, "x"], "data": [[*GOOD, 1]]},
        [(None, "x", "unknown_feature")],
    ),
    (
        "missing column",
        {"columns": IRIS_FEATURES[:3], "data": [GOOD[:3]]},
        [(None, "petal_width", "missing")],
    ),
    (
        "duplicate column",
        {"columns": [*IRIS_FEATURES, "sepal_width"], "data": [[*GOOD, 1.0]]},
        [(None, "sepal_width", "duplicate")],
    ),
    (
        "column name not a string",
        {"columns": [*IRIS_FEATURES[:3], 4], "data": [GOOD]},
        [
            (None, None, "wrong_type"),
            (None, "petal_width", "missing"),
        ],
    ),
    (
        "columns not a list",
        {"columns": "sepal_length", "data": [GOOD]},
        [(None, None, "wrong_type")],
    ),
    ("columns empty", {"columns": [], "data": [GOOD]}, [(None, None, "wrong_type")]),
    ("no columns", {"data": [GOOD]}, [(None, None, "missing")]),
    ("no data", {"columns": IRIS_FEATURES}, [(None, None, "missing")]),
    ("data not a list", {"columns": IRIS_FEATURES, "data": {"a": 1}}, [(None, None, "wrong_type")]),
    ("data empty", {"columns": IRIS_FEATURES, "data": []}, [(None, None, "empty")]),
    (
        "unknown field",
        {"columns": IRIS_FEATURES, "data": [GOOD], "x": 1},
        [(None, None, "unknown_field")],
    ),
    (
        "row not an array",
        {"columns": IRIS_FEATURES, "data": [GOOD, {"a": 1}, GOOD]},
        [(1, None, "wrong_type")],
    ),
    (
        "row too short",
        {"columns": IRIS_FEATURES, "data": [GOOD, GOOD[:3]]},
        [(1, None, "wrong_length")],
    ),
    (
        "string for a number",
        {"columns": IRIS_FEATURES, "data": [GOOD, ["5.1", 3.5, 1.4, 0.2]]},
        [(1, "sepal_length", "wrong_type")],
    ),
    (
        "boolean for a number",
        {"columns": IRIS_FEATURES, "data": [[5.1, True, 1.4, 0.2]]},
        [(0, "sepal_width", "wrong_type")],
    ),
    (
        "null, not nullable",
        {"columns": IRIS_FEATURES, "data": [[5.1, 3.5, None, 0.2]]},
        [(0, "petal_length", "null")],
    ),
    (
        "below the minimum",
        {"columns": IRIS_FEATURES, "data": [[5.1, 3.5, 1.4, -0.2]]},
        [(0, "petal_width", "out_of_range")],
    ),
    (
        "integer too large",
        {"columns": IRIS_FEATURES, "data": [[10**400, 3.5, 1.4, 0.2]]},
        [(0, "sepal_length", "out_of_range")],
    ),
    (
        "array for a number",
        {"columns": IRIS_FEATURES, "data": [[[5.1], 3.5, 1.4, 0.2]]},
        [(0, "sepal_length", "wrong_type")],
    ),
    (
        "every problem, by row then schema order",
        {
            "columns": list(reversed(IRIS_FEATURES)),
            "data": [[0.2, 1.4, 3.5, 5.1], ["x", 1.4, None, -1], [0.2, 1.4], [0.2, 1.4, 3.5, 5.1]],
        },
        [
            (1, "sepal_length", "out_of_range"),
            (1, "sepal_width", "null"),
            (1, "petal_width", "wrong_type"),
            (2, None, "wrong_length"),
        ],
    ),
    (
        "both forms at once",
        {"instances": [dict(zip(IRIS_FEATURES, GOOD, strict=True))], "columns": []},
        [(None, None, "unknown_field")],
    ),
]


@pytest.mark.parametrize(
    ("label", "body", "expected"), BAD_BODIES, ids=[case[0] for case in BAD_BODIES]
)
def test_invalid_columnar_bodies_422_listing_every_problem(
    client: TestClient, label: str, body: Any, expected: list[Any]
) -> None:
    register_iris(client)
    assert problems_of(client, body) == expected, label
    [entry] = client.get("/v1/predictions").json()["data"]
    assert (entry["status"], entry["http_status"]) == ("invalid", 422)
    assert entry["inputs"] == loggable(body.get("instances", body))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_refused(client: TestClient, literal: str) -> None:
    register_iris(client)
    raw = f'{{"columns": {json.dumps(IRIS_FEATURES)}, "data": [[1, 1, {literal}, 1]]}}'
    response = client.post("/v1/models/iris/predict", content=raw.encode())
    assert response.status_code == 422, response.text
    [problem] = response.json()["details"]
    assert (problem["row"], problem["feature"], problem["type"]) == (
        0,
        "petal_length",
        "not_finite",
    )


def test_too_many_rows(make_client: Any) -> None:
    with make_client(max_batch_size=3) as client:
        register_iris(client)
        body = {"columns": IRIS_FEATURES, "data": iris_rows(4)}
        assert problems_of(client, body) == [(None, None, "too_many")]


def test_many_bad_rows_are_reported_like_records(client: TestClient) -> None:
    """100 rows (checked with numpy) with problems here and there: the same list as the
    records form gives, and as each row alone gives."""
    register_iris(client)
    data: list[list[Any]] = iris_rows(100)
    for row in range(0, 100, 7):
        data[row][row % 4] = [-1.0, "1", None, True][row // 7 % 4]
    columnar = problems_of(client, {"columns": IRIS_FEATURES, "data": data})
    records = problems_of(client, {"instances": as_instances(IRIS_FEATURES, data)})
    assert columnar == records
    assert len(columnar) == len(range(0, 100, 7))


# The validator, directly: both forms, both routes (value by value and numpy) agree.

SCHEMA = InputSchema.model_validate(
    {
        "features": [
            {"name": "x", "type": "number", "minimum": -1, "maximum": 1},
            {"name": "n", "type": "integer", "nullable": True, "maximum": 100},
            {"name": "m", "type": "integer"},
            {"name": "y", "type": "number", "nullable": True},
            {"name": "flag", "type": "boolean"},
            {"name": "colour", "type": "category", "categories": ["red", "blue"], "nullable": True},
        ]
    }
)
NAMES = [f.name for f in SCHEMA.features]
VALID = {"x": 0.5, "n": 3, "m": 2, "y": 0.1, "flag": True, "colour": "red"}
AWKWARD: dict[str, list[Any]] = {
    "x": [0.5, -1, 1, 0, 2, -1.5, math.nan, math.inf, "1", True, None, 10**400, 2**64, [1]],
    "n": [3, 4.0, 2.5, None, math.nan, 101, 2**70, -(2**70), True, "3", 1e300, -math.inf],
    "m": [1, 2, 3.0, 3.5, None, math.nan, 2**64, -(2**63) - 1, 10**400, False],
    "y": [0.1, 1e308, -1e308, math.nan, None, 7, 2**63, math.inf, "x"],
    "flag": [True, False, 0, 1, None, "true"],
    "colour": ["red", "blue", None, "green", 1],
}


def outcome(payload: Any) -> tuple[str, Any, bool]:
    validator = CompiledValidator(SCHEMA, max_rows=10_000)
    try:
        batch: ValidatedBatch = validator.validate(payload)
    except ValidationFailed as exc:
        return "invalid", exc.details, False
    columns = {
        name: [None if isinstance(v, float) and math.isnan(v) else v for v in array.tolist()]
        for name, array in batch.columns.items()
    }
    return "valid", columns, batch.log_safe


def test_both_forms_and_both_routes_agree_with_each_row_alone() -> None:
    rng = random.Random(0)
    for trial in range(300):
        count = rng.choice([1, 2, VECTOR_MIN_ROWS - 1, VECTOR_MIN_ROWS, 40])
        share = rng.choice([0.0, 0.01, 0.1, 0.5])
        rows: list[Any] = []
        for _ in range(count):
            row = {f: rng.choice(AWKWARD[f]) if rng.random() < share else VALID[f] for f in NAMES}
            if rng.random() < share / 4:
                row.pop(rng.choice(NAMES))
            if rng.random() < share / 4:
                row["extra"] = 1
            rows.append(row)
        if count > 1 and rng.random() < 0.05:
            rows[1] = [1, 2]
        got = outcome({"instances": rows})
        # Each row alone (value by value), renumbered: what the batch must say.
        problems: list[dict[str, Any]] = []
        columns: dict[str, list[Any]] = {name: [] for name in NAMES}
        safe = True
        for index, row in enumerate(rows):
            kind, found, row_safe = outcome({"instances": [row]})
            if kind == "invalid":
                problems += [p | {"row": index} for p in found]
            else:
                for name in NAMES:
                    columns[name] += found[name]
                safe = safe and row_safe
        if problems:
            assert got[:2] == ("invalid", problems[:MAX_REPORTED_PROBLEMS]), trial
        else:
            assert got[:2] == ("valid", columns), trial
            assert not got[2] or safe, trial  # never claims safe when a row is not
            if got[2]:
                assert loggable(rows) == rows, trial
        if all(isinstance(r, dict) and set(r) == set(NAMES) for r in rows):
            order = rng.sample(NAMES, len(NAMES))
            data = [[row[name] for name in order] for row in rows]
            assert outcome({"columns": order, "data": data})[:2] == got[:2], trial


def test_log_safety_is_exact_for_nan_and_huge_integers() -> None:
    big = [VALID | {"y": 2**64 + 1}] * VECTOR_MIN_ROWS
    nan = [VALID | {"y": math.nan}] * VECTOR_MIN_ROWS
    null = [VALID | {"y": None}] * VECTOR_MIN_ROWS
    for rows, safe in ((big, False), (nan, False), (null, True), ([VALID] * 20, True)):
        for form in (rows, rows[:1]):
            assert outcome({"instances": form})[2] is safe
            data = [[row[name] for name in NAMES] for row in form]
            assert outcome({"columns": NAMES, "data": data})[2] is safe


def test_problem_list_is_bounded_but_counted() -> None:
    data = [["bad", None, None, None, None, None]] * 600
    with pytest.raises(ValidationFailed) as caught:
        CompiledValidator(SCHEMA, max_rows=1000).validate({"columns": NAMES, "data": data})
    assert len(caught.value.details) == MAX_REPORTED_PROBLEMS
    assert caught.value.message.startswith(f"{600 * 3} problem(s)")  # x, m and flag
    assert [(p["row"], p["feature"]) for p in caught.value.details[:4]] == [
        (0, "x"),
        (0, "m"),
        (0, "flag"),
        (1, "x"),
    ]
