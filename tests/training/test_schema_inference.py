"""Schema inference, task inference and the canonical model frame, on real and mixed data."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from modelserve.core.errors import ValidationFailed
from modelserve.registry.schemas import FeatureSpec, FeatureType, InputSchema
from modelserve.training.schema_inference import canonical_frame, infer_schema, infer_task

N = 40


def mixed_frame() -> pd.DataFrame:
    """Every supported kind of column, with missing values, built in memory."""
    rng = np.random.default_rng(7)
    income = rng.normal(50_000, 10_000, N)
    income[[3, 11]] = np.nan
    flag = rng.integers(0, 2, N).astype(float)
    flag[5] = np.nan
    colour: list[str | None] = [["red", "green", "blue"][i % 3] for i in range(N)]
    colour[4] = None
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, N),
            "income": income,
            "member": rng.integers(0, 2, N),
            "flag": flag,
            "smoker": [["yes", "No", "YES", "no"][i % 4] for i in range(N)],
            "active": [i % 2 == 0 for i in range(N)],
            "colour": colour,
            "visits": pd.array([None if i == 2 else i % 7 + 2 for i in range(N)], dtype="Int64"),
            "note": [f"free text number {i}" for i in range(N)],
            "empty": [None] * N,
            "label": ["good" if i % 3 else "bad" for i in range(N)],
        }
    )


def spec(result_schema: InputSchema, name: str) -> FeatureSpec:
    return next(f for f in result_schema.features if f.name == name)


def test_mixed_types_are_inferred() -> None:
    result = infer_schema(mixed_frame(), "label")
    schema = result.schema
    types = {f.name: f.type for f in schema.features}
    assert types == {
        "age": FeatureType.NUMBER,  # integers in the data; 35.5 is still a valid input
        "income": FeatureType.NUMBER,
        "member": FeatureType.BOOLEAN,
        "flag": FeatureType.BOOLEAN,
        "smoker": FeatureType.BOOLEAN,
        "active": FeatureType.BOOLEAN,
        "colour": FeatureType.CATEGORY,
        "visits": FeatureType.NUMBER,
    }
    assert schema.names == [
        "age",
        "income",
        "member",
        "flag",
        "smoker",
        "active",
        "colour",
        "visits",
    ]
    nullable = {f.name for f in schema.features if f.nullable}
    assert nullable == {"income", "flag", "colour", "visits"}
    assert spec(schema, "colour").categories == ["blue", "green", "red"]
    assert all(f.minimum is None and f.maximum is None for f in schema.features)
    assert set(result.ignored) == {"note", "empty"}
    assert "distinct values" in result.ignored["note"]
    assert "empty" in result.ignored["empty"]


def test_csv_round_trip_infers_the_same_types() -> None:
    frame = mixed_frame().drop(columns=["empty"])
    read = pd.read_csv(io.StringIO(frame.to_csv(index=False)))
    schema = infer_schema(read, "label").schema
    types = {f.name: f.type for f in schema.features}
    assert types["age"] is FeatureType.NUMBER
    assert types["income"] is FeatureType.NUMBER
    assert types["member"] is FeatureType.BOOLEAN
    assert types["flag"] is FeatureType.BOOLEAN
    assert types["smoker"] is FeatureType.BOOLEAN
    assert types["active"] is FeatureType.BOOLEAN
    assert types["colour"] is FeatureType.CATEGORY
    assert types["visits"] is FeatureType.NUMBER
    assert spec(schema, "colour").nullable


def test_max_categories_threshold() -> None:
    frame = pd.DataFrame({"city": [f"c{i % 5}" for i in range(20)], "y": range(20)})
    assert spec(infer_schema(frame, "y").schema, "city").type is FeatureType.CATEGORY
    result = infer_schema(frame.assign(x=1.5), "y", max_categories=4)
    assert "city" in result.ignored
    assert result.schema.names == ["x"]


def test_real_datasets_are_all_numeric() -> None:
    for loader in (load_iris, load_breast_cancer, load_diabetes):
        frame = loader(as_frame=True).frame
        result = infer_schema(frame, "target")
        assert "target" not in result.schema.names
        assert len(result.schema.names) == frame.shape[1] - 1
        assert result.ignored == {}
        assert {f.type for f in result.schema.features} == {FeatureType.NUMBER}
        assert not any(f.nullable for f in result.schema.features)


def test_missing_target_lists_available_columns() -> None:
    with pytest.raises(ValidationFailed) as caught:
        infer_schema(mixed_frame(), "nope")
    assert caught.value.details["available_columns"][:2] == ["age", "income"]


def test_no_usable_feature() -> None:
    frame = pd.DataFrame({"note": [f"text {i}" for i in range(30)], "y": [0, 1] * 15})
    with pytest.raises(ValidationFailed) as caught:
        infer_schema(frame, "y")
    assert "note" in caught.value.details["ignored"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["a", "b", "a"], "classification"),
        ([True, False, True], "classification"),
        ([0, 1, 2, 1], "classification"),
        (list(range(50)), "regression"),
        ([0.5, 1.5, 2.0], "regression"),
    ],
)
def test_infer_task(values: list[Any], expected: str) -> None:
    assert infer_task(pd.Series(values)) == expected


def test_infer_task_on_real_targets() -> None:
    assert infer_task(load_iris(as_frame=True).target) == "classification"
    assert infer_task(load_breast_cancer(as_frame=True).target) == "classification"
    assert infer_task(load_diabetes(as_frame=True).target) == "regression"
    assert infer_task(pd.Series(["x", "y"], dtype="category")) == "classification"


def test_canonical_frame_dtypes_and_values() -> None:
    frame = mixed_frame()
    schema = infer_schema(frame, "label").schema
    canonical = canonical_frame(frame, schema)
    assert list(canonical.columns) == schema.names
    for feature in schema.features:
        dtype = canonical[feature.name].dtype
        if feature.type is FeatureType.CATEGORY:
            assert dtype == np.dtype(object)
        else:
            assert dtype == np.float64
    assert canonical["smoker"].tolist()[:4] == [1.0, 0.0, 1.0, 0.0]
    assert canonical["active"].tolist()[:2] == [1.0, 0.0]
    assert np.isnan(canonical["flag"].iloc[5])
    assert np.isnan(canonical["visits"].iloc[2])
    colours = canonical["colour"].tolist()
    assert colours[4] is None
    assert all(type(c) is str for i, c in enumerate(colours) if i != 4)


def test_canonical_frame_reads_boolean_spellings_and_infinity() -> None:
    schema = InputSchema(
        features=[
            FeatureSpec(name="b", type=FeatureType.BOOLEAN, nullable=True),
            FeatureSpec(name="x", type=FeatureType.NUMBER, nullable=True),
            FeatureSpec(name="c", type=FeatureType.CATEGORY, categories=["1", "2"]),
        ]
    )
    raw = pd.DataFrame(
        {
            "b": [" True", "no", "YES", None, "false"],
            "x": [1.0, np.inf, -np.inf, 2.0, np.nan],
            "c": [1, 2, 1, 2, 1],
        }
    )
    canonical = canonical_frame(raw, schema)
    assert canonical["b"].tolist()[:3] == [1.0, 0.0, 1.0]
    assert np.isnan(canonical["b"].iloc[3])
    assert canonical["x"].isna().tolist() == [False, True, True, False, True]
    assert canonical["c"].tolist() == ["1", "2", "1", "2", "1"]


def test_canonical_frame_reports_wrong_values_and_missing_columns() -> None:
    schema = InputSchema(
        features=[
            FeatureSpec(name="b", type=FeatureType.BOOLEAN),
            FeatureSpec(name="n", type=FeatureType.INTEGER),
            FeatureSpec(name="gone", type=FeatureType.NUMBER),
        ]
    )
    raw = pd.DataFrame({"b": ["yes", "maybe"], "n": [1.0, 2.5]})
    with pytest.raises(ValidationFailed) as caught:
        canonical_frame(raw, schema)
    problems = {p["feature"]: p for p in caught.value.details}
    assert problems["b"]["examples"] == ["maybe"]
    assert problems["n"]["examples"] == ["2.5"]
    assert problems["gone"]["type"] == "missing"
