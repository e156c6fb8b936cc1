"""The compiled validator, through its Python API: exact types, no coercion, every problem."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from modelserve.core.errors import ValidationFailed
from modelserve.inference.validation import MAX_REPORTED_PROBLEMS, CompiledValidator
from modelserve.registry.schemas import InputSchema

SCHEMA = InputSchema.model_validate(
    {
        "features": [
            {"name": "x", "type": "number", "minimum": -1, "maximum": 1},
            {"name": "n", "type": "integer", "nullable": True},
            {"name": "flag", "type": "boolean"},
            {"name": "colour", "type": "category", "categories": ["red", "blue"], "nullable": True},
        ]
    }
)
GOOD = {"x": 0.5, "n": 3, "flag": True, "colour": "red"}


def problems(instance: dict[str, Any]) -> list[tuple[str | None, str]]:
    with pytest.raises(ValidationFailed) as caught:
        CompiledValidator(SCHEMA, max_rows=10).validate({"instances": [instance]})
    return [(p["feature"], p["type"]) for p in caught.value.details]


def test_valid_rows_become_typed_columns() -> None:
    batch = CompiledValidator(SCHEMA, max_rows=10).validate(
        {"instances": [GOOD, {"x": -1, "n": None, "flag": False, "colour": None}]}
    )
    assert batch.n_rows == 2
    assert batch.columns["x"].dtype == np.float64
    assert batch.columns["x"].tolist() == [0.5, -1.0]
    assert batch.columns["n"][0] == 3.0
    assert math.isnan(batch.columns["n"][1])
    assert batch.columns["flag"].tolist() == [1.0, 0.0]
    assert batch.columns["colour"].tolist() == ["red", None]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"flag": "0"}, [("flag", "wrong_type")]),
        ({"flag": 2}, [("flag", "wrong_type")]),
        ({"flag": 1.0}, [("flag", "wrong_type")]),
        ({"flag": "true"}, [("flag", "wrong_type")]),
        ({"flag": None}, [("flag", "null")]),
        ({"x": "12"}, [("x", "wrong_type")]),
        ({"x": 1.5}, [("x", "out_of_range")]),
        ({"x": -2}, [("x", "out_of_range")]),
        ({"x": float("inf")}, [("x", "not_finite")]),
        ({"x": float("nan")}, [("x", "not_finite")]),
        ({"n": 2.5}, [("n", "wrong_type")]),
        ({"n": True}, [("n", "wrong_type")]),
        ({"colour": "green"}, [("colour", "not_allowed")]),
        ({"colour": 1}, [("colour", "wrong_type")]),
        ({"extra": 1}, [("extra", "unknown_feature")]),
        ({"x": [1]}, [("x", "wrong_type")]),
    ],
)
def test_each_wrong_value(change: dict[str, Any], expected: list[Any]) -> None:
    assert problems(GOOD | change) == expected


def test_integral_float_is_an_integer_and_nan_is_null_when_nullable() -> None:
    batch = CompiledValidator(SCHEMA, max_rows=10).validate(
        {"instances": [GOOD | {"n": 4.0}, GOOD | {"n": float("nan")}]}
    )
    assert batch.columns["n"][0] == 4.0
    assert math.isnan(batch.columns["n"][1])


def test_problem_list_is_bounded_but_counted() -> None:
    rows = [{"x": "bad"}] * 600
    with pytest.raises(ValidationFailed) as caught:
        CompiledValidator(SCHEMA, max_rows=1000).validate({"instances": rows})
    assert len(caught.value.details) == MAX_REPORTED_PROBLEMS
    assert caught.value.message.startswith(f"{600 * 4} problem(s)")


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "instances",
        {"instances": None},
        {"instances": []},
        {"instances": [GOOD], "extra": 1},
        {"instances": [GOOD] * 11},
    ],
)
def test_envelope_problems(payload: Any) -> None:
    with pytest.raises(ValidationFailed):
        CompiledValidator(SCHEMA, max_rows=10).validate(payload)


def test_schema_contract_rejects_inconsistent_specs() -> None:
    bad = [
        {"features": []},
        {"features": [{"name": "a", "type": "category"}]},
        {"features": [{"name": "a", "type": "number", "categories": ["x"]}]},
        {"features": [{"name": "a", "type": "boolean", "minimum": 0}]},
        {"features": [{"name": "a", "type": "number", "minimum": 2, "maximum": 1}]},
        {"features": [{"name": "a", "type": "number"}, {"name": "a", "type": "number"}]},
        {"features": [{"name": "a", "type": "text"}]},
    ]
    for schema in bad:
        with pytest.raises(ValueError, match=r".+"):
            InputSchema.model_validate(schema)


PROFILED = InputSchema.model_validate(
    {
        "features": [
            {"name": "age", "type": "number", "observed": {"min": 40, "max": 95}},
            {"name": "ef", "type": "number", "maximum": 80, "observed": {"min": 14, "max": 80}},
            {"name": "smoking", "type": "boolean"},
        ]
    }
)


@pytest.mark.parametrize("rows", [3, 40])  # value by value, and vectorised
def test_booleans_take_true_false_and_integers_0_1(rows: int) -> None:
    validator = CompiledValidator(PROFILED, max_rows=100)
    flags: list[Any] = [0, 1, True, False] * rows
    instances = [{"age": 60, "ef": 40, "smoking": flag} for flag in flags[:rows]]
    batch = validator.validate({"instances": instances})
    assert batch.columns["smoking"].tolist() == [float(f) for f in flags[:rows]]
    assert batch.warnings is None
    for wrong in ("0", 2, 1.0, -1):
        bad = [*instances[:-1], {"age": 60, "ef": 40, "smoking": wrong}]
        with pytest.raises(ValidationFailed) as caught:
            validator.validate({"instances": bad})
        assert [(p["row"], p["feature"], p["type"]) for p in caught.value.details] == [
            (rows - 1, "smoking", "wrong_type")
        ]


@pytest.mark.parametrize("rows", [3, 40])
def test_values_outside_the_training_range_are_served_with_warnings(rows: int) -> None:
    validator = CompiledValidator(PROFILED, max_rows=100)
    instances = [{"age": 60.0, "ef": 40, "smoking": 0} for _ in range(rows)]
    instances[0] = {"age": -5, "ef": 10, "smoking": 1}
    instances[-1] = {"age": 95.5, "ef": 80, "smoking": 1}
    batch = validator.validate({"instances": instances})
    assert batch.columns["age"].tolist()[0] == -5.0
    assert batch.warnings is not None
    assert [(w["row"], w["feature"], w["type"]) for w in batch.warnings] == [
        (0, "age", "outside_training_range"),
        (0, "ef", "outside_training_range"),
        (rows - 1, "age", "outside_training_range"),
    ]
    assert "below the smallest value seen in training (40)" in batch.warnings[0]["message"]
    assert "above the largest value seen in training (95)" in batch.warnings[2]["message"]
    assert batch.warning_counts == {"age": 2, "ef": 1}
    columnar = validator.validate(
        {
            "columns": ["smoking", "ef", "age"],
            "data": [[r["smoking"], r["ef"], r["age"]] for r in instances],
        }
    )
    assert columnar.warnings == batch.warnings


@pytest.mark.parametrize("rows", [3, 40])
def test_hard_limits_refuse_where_the_range_only_warns(rows: int) -> None:
    validator = CompiledValidator(PROFILED, max_rows=100)
    instances = [{"age": 60, "ef": 40, "smoking": 0} for _ in range(rows)]
    instances[1] = {"age": 200, "ef": 250, "smoking": 0}
    with pytest.raises(ValidationFailed) as caught:
        validator.validate({"instances": instances})
    assert [(p["row"], p["feature"], p["type"]) for p in caught.value.details] == [
        (1, "ef", "out_of_range")
    ]


def test_nulls_and_unprofiled_features_never_warn() -> None:
    schema = InputSchema.model_validate(
        {
            "features": [
                {"name": "a", "type": "number", "nullable": True, "observed": {"min": 0, "max": 1}},
                {"name": "b", "type": "number"},
            ]
        }
    )
    validator = CompiledValidator(schema, max_rows=100)
    for rows in (3, 40):
        batch = validator.validate({"instances": [{"a": None, "b": 1e9}] * rows})
        assert batch.warnings is None
