"""Infer an input schema from tabular training data, and build the canonical model frame.

The canonical model frame is the contract shared with the inference server: the schema's
features, in schema order, with

- number and integer features as float64 (NaN for missing),
- boolean features as float64 holding 0.0 / 1.0 (NaN for missing),
- category features as object dtype holding Python ``str`` values (None for missing).

Training fits on :func:`canonical_frame` output so the fitted pipeline sees at training time
exactly what serving hands it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api.types import (
    is_bool_dtype,
    is_complex_dtype,
    is_float_dtype,
    is_integer_dtype,
    is_numeric_dtype,
    is_object_dtype,
    is_string_dtype,
)

from modelserve.core.errors import ValidationFailed
from modelserve.registry.schemas import FeatureProfile, FeatureSpec, FeatureType, InputSchema

TRUE_WORDS = frozenset({"true", "yes"})
"""Text read as a true boolean (compared case-insensitively, surrounding spaces ignored)."""
FALSE_WORDS = frozenset({"false", "no"})
"""Text read as a false boolean (compared case-insensitively, surrounding spaces ignored)."""
MAX_NAME_LENGTH = 128
"""Longest feature name the schema admits."""
MAX_CLASSIFICATION_INT_VALUES = 20
"""An integer target with at most this many distinct values is a classification target."""
MAX_REPORTED_EXAMPLES = 5

ColumnKind = Literal["bool", "int", "float", "text", "unsupported"]


@dataclass(frozen=True)
class SchemaInference:
    """The inferred schema and the columns left out of it, each with a reason."""

    schema: InputSchema
    ignored: dict[str, str] = field(default_factory=dict)


def check_target(df: pd.DataFrame, target: str) -> None:
    """Raise ValidationFailed (listing the available columns) unless ``target`` is a column."""
    if target not in df.columns:
        raise ValidationFailed(
            f"Target column {target!r} is not in the data.",
            details={"target": target, "available_columns": [str(c) for c in df.columns]},
        )


def infer_schema(df: pd.DataFrame, target: str, *, max_categories: int = 20) -> SchemaInference:
    """Infer the input schema of every column except ``target``.

    Booleans: bool columns, numbers that are all 0/1 (flags; served as true/false or 0/1),
    text that is all true/false/yes/no. Numbers: other numeric dtypes, integers included.
    Categories: text with at most ``max_categories`` distinct values. Other text, entirely empty
    columns and unsupported dtypes are ignored, with a reason. No minimum/maximum is set (see
    :func:`with_profile` for the observed ranges). Raises ValidationFailed when the target is
    missing or no usable feature remains.
    """
    check_target(df, target)
    duplicated = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    if duplicated:
        raise ValidationFailed(
            "The data has duplicate column names.", details={"duplicate_columns": duplicated}
        )
    features: list[FeatureSpec] = []
    ignored: dict[str, str] = {}
    for name in df.columns:
        if name == target:
            continue
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
            ignored[str(name)] = f"column name must be text of 1 to {MAX_NAME_LENGTH} characters"
            continue
        inferred = _infer_feature(name, df[name], max_categories)
        if isinstance(inferred, str):
            ignored[name] = inferred
        else:
            features.append(inferred)
    if not features:
        raise ValidationFailed(
            "No usable feature column remains besides the target.",
            details={"target": target, "ignored": ignored},
        )
    return SchemaInference(schema=InputSchema(features=features), ignored=ignored)


def infer_task(y: pd.Series[Any]) -> Literal["classification", "regression"]:
    """Classification for text, boolean and categorical targets and for integer targets with
    at most 20 distinct values; regression otherwise."""
    dtype = y.dtype
    if (
        is_bool_dtype(dtype)
        or is_object_dtype(dtype)
        or is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    ):
        return "classification"
    if is_integer_dtype(dtype) and y.nunique(dropna=True) <= MAX_CLASSIFICATION_INT_VALUES:
        return "classification"
    return "regression"


def canonical_frame(df: pd.DataFrame, schema: InputSchema) -> pd.DataFrame:
    """Convert raw data to the canonical model frame for ``schema`` (see the module docstring).

    Booleans are read from bools, 0/1 and true/false/yes/no text (case-insensitive); infinite
    numbers count as missing. Raises ValidationFailed listing every schema feature that is
    absent or holds values of the wrong kind.
    """
    problems: list[dict[str, Any]] = []
    columns: dict[str, pd.Series[Any]] = {}
    for spec in schema.features:
        if spec.name not in df.columns:
            problems.append(_problem(spec.name, "missing", "column is missing", []))
            continue
        column, bad = _CONVERTERS[spec.type](df[spec.name])
        if bad:
            kind = "an integer" if spec.type is FeatureType.INTEGER else spec.type.value
            message = f"{len(bad)} value(s) are not {kind}"
            problems.append(_problem(spec.name, "wrong_type", message, bad))
        columns[spec.name] = column
    if problems:
        raise ValidationFailed(
            f"{len(problems)} column(s) do not match the input schema.", details=problems
        )
    return pd.DataFrame(columns, index=df.index, columns=schema.names)


def with_profile(schema: InputSchema, frame: pd.DataFrame) -> InputSchema:
    """``schema`` with what the canonical ``frame`` holds recorded on each feature: the range
    of numbers, the frequencies of booleans and categories, present and missing counts.
    Raises ValidationFailed when training values break a minimum or maximum the schema sets."""
    features: list[FeatureSpec] = []
    problems: list[dict[str, Any]] = []
    for spec in schema.features:
        column = frame[spec.name]
        if spec.type is FeatureType.CATEGORY:
            present = column[column.notna()]
            counts = present.value_counts(sort=False)
            profile = FeatureProfile(
                frequencies={str(k): int(v) for k, v in sorted(counts.items())},
                count=len(present),
                missing=len(column) - len(present),
            )
        else:
            values = column.to_numpy(dtype=np.float64)
            finite = values[~np.isnan(values)]
            profile = _numeric_profile(spec, finite, len(values))
            problems.extend(_limit_problems(spec, finite))
        features.append(spec.model_copy(update={"observed": profile}))
    if problems:
        raise ValidationFailed("Training values break the schema's limits.", details=problems)
    return InputSchema(features=features)


def _numeric_profile(
    spec: FeatureSpec, finite: np.ndarray[Any, np.dtype[np.float64]], total: int
) -> FeatureProfile:
    count, missing = int(finite.size), total - int(finite.size)
    if spec.type is FeatureType.BOOLEAN:
        trues = int((finite == 1.0).sum())
        frequencies = {"false": count - trues, "true": trues}
        return FeatureProfile(frequencies=frequencies, count=count, missing=missing)
    if not count:
        return FeatureProfile(count=0, missing=missing)
    low, high = float(finite.min()), float(finite.max())
    return FeatureProfile(min=low, max=high, count=count, missing=missing)


def _limit_problems(
    spec: FeatureSpec, finite: np.ndarray[Any, np.dtype[np.float64]]
) -> list[dict[str, Any]]:
    found = []
    if spec.minimum is not None and (below := finite[finite < spec.minimum]).size:
        message = f"{below.size} value(s) are below the minimum {spec.minimum}"
        found.append(_problem(spec.name, "out_of_range", message, below.tolist()))
    if spec.maximum is not None and (above := finite[finite > spec.maximum]).size:
        message = f"{above.size} value(s) are above the maximum {spec.maximum}"
        found.append(_problem(spec.name, "out_of_range", message, above.tolist()))
    return found


def column_kind(col: pd.Series[Any]) -> ColumnKind:
    """What a column's values are: by dtype, or by inspecting the values of object columns."""
    dtype = col.dtype
    if is_bool_dtype(dtype):
        return "bool"
    if is_integer_dtype(dtype):
        return "int"
    if is_float_dtype(dtype):
        return "float"
    if is_complex_dtype(dtype) or is_numeric_dtype(dtype):
        return "unsupported"
    if is_object_dtype(dtype):
        present = [v for v in col.tolist() if not is_missing(v)]
        if present and all(isinstance(v, bool | np.bool_) for v in present):
            return "bool"
        if present and all(_is_real(v) for v in present):
            return "int" if all(isinstance(v, int | np.integer) for v in present) else "float"
        return "text"
    if is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "text"
    return "unsupported"


def is_missing(value: Any) -> bool:
    """Whether one value is missing: None, NaN, pandas NA/NaT, or an infinite float."""
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return not math.isfinite(float(value))
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def as_text(value: Any) -> str:
    """A present value as the Python ``str`` used for categories."""
    return value if type(value) is str else str(value)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _bool_word(text: str) -> float | None:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return 1.0
    if word in FALSE_WORDS:
        return 0.0
    return None


def _infer_feature(name: str, col: pd.Series[Any], max_categories: int) -> FeatureSpec | str:
    """A feature spec for one column, or the reason it is ignored."""
    kind = column_kind(col)
    if kind == "unsupported":
        return f"unsupported column type {col.dtype}"
    numbers = _float_array(col)
    if numbers is not None:
        finite = numbers[~np.isnan(numbers)]
        n_present = int(finite.size)
        is_01 = bool(np.isin(finite, (0.0, 1.0)).all())
        present: list[Any] = []
    else:
        present = [v for v in col.tolist() if not is_missing(v)]
        n_present = len(present)
        is_01 = all(v in (0, 1) for v in present) if kind in ("int", "float") else False
    if not n_present:
        return "entirely empty: the column has no values"
    nullable = n_present < len(col)
    if kind == "bool":
        return FeatureSpec(name=name, type=FeatureType.BOOLEAN, nullable=nullable)
    if kind in ("int", "float"):
        # Whole numbers are numbers too: an integer column of the training data says nothing
        # about whether 35.5 is a valid input (a schema file can say ``integer``).
        feature_type = FeatureType.BOOLEAN if is_01 else FeatureType.NUMBER
        return FeatureSpec(name=name, type=feature_type, nullable=nullable)
    texts = {as_text(v) for v in present}
    if all(_bool_word(t) is not None for t in texts):
        return FeatureSpec(name=name, type=FeatureType.BOOLEAN, nullable=nullable)
    if len(texts) > max_categories:
        return (
            f"text with {len(texts)} distinct values (more than {max_categories}): "
            "free text or an identifier, not a category"
        )
    return FeatureSpec(
        name=name, type=FeatureType.CATEGORY, nullable=nullable, categories=sorted(texts)
    )


def _float_array(col: pd.Series[Any]) -> np.ndarray[Any, np.dtype[np.float64]] | None:
    """A bool or real-dtype column as float64 with NaN for missing and infinite values; None for
    object and other dtypes, whose values need inspecting one by one."""
    dtype = col.dtype
    if is_object_dtype(dtype) or is_complex_dtype(dtype):
        return None
    if not (is_bool_dtype(dtype) or is_integer_dtype(dtype) or is_float_dtype(dtype)):
        return None
    values = col.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


def _to_number(col: pd.Series[Any], *, integer: bool) -> tuple[pd.Series[Any], list[Any]]:
    numbers = _float_array(col)
    if numbers is not None:
        present = ~np.isnan(numbers)
        fractional = present & (numbers != np.round(numbers)) if integer else present & False
        bad_numbers: list[Any] = numbers[fractional].tolist()
        numbers[fractional] = np.nan
        return pd.Series(numbers, index=col.index, dtype=np.float64), bad_numbers
    out: list[float] = []
    bad: list[Any] = []
    for value in col.tolist():
        if is_missing(value):
            out.append(math.nan)
        elif _is_real(value) and (not integer or float(value).is_integer()):
            out.append(float(value))
        else:
            out.append(math.nan)
            bad.append(value)
    return pd.Series(out, index=col.index, dtype=np.float64), bad


def _to_number_feature(col: pd.Series[Any]) -> tuple[pd.Series[Any], list[Any]]:
    return _to_number(col, integer=False)


def _to_integer_feature(col: pd.Series[Any]) -> tuple[pd.Series[Any], list[Any]]:
    return _to_number(col, integer=True)


def _to_boolean_feature(col: pd.Series[Any]) -> tuple[pd.Series[Any], list[Any]]:
    numbers = _float_array(col)
    if numbers is not None:
        wrong = ~np.isnan(numbers) & ~np.isin(numbers, (0.0, 1.0))
        bad_numbers: list[Any] = numbers[wrong].tolist()
        numbers[wrong] = np.nan
        return pd.Series(numbers, index=col.index, dtype=np.float64), bad_numbers
    out: list[float] = []
    bad: list[Any] = []
    for value in col.tolist():
        converted: float | None
        if is_missing(value):
            converted = math.nan
        elif isinstance(value, bool | np.bool_):
            converted = float(value)
        elif _is_real(value):
            converted = float(value) if value in (0, 1) else None
        elif isinstance(value, str):
            converted = _bool_word(value)
            if converted is None and value.strip() in ("0", "1"):
                converted = float(value.strip())
        else:
            converted = None
        if converted is None:
            bad.append(value)
            converted = math.nan
        out.append(converted)
    return pd.Series(out, index=col.index, dtype=np.float64), bad


def _to_category_feature(col: pd.Series[Any]) -> tuple[pd.Series[Any], list[Any]]:
    out = [None if is_missing(v) else as_text(v) for v in col.tolist()]
    return pd.Series(out, index=col.index, dtype=object), []


_CONVERTERS = {
    FeatureType.NUMBER: _to_number_feature,
    FeatureType.INTEGER: _to_integer_feature,
    FeatureType.BOOLEAN: _to_boolean_feature,
    FeatureType.CATEGORY: _to_category_feature,
}


def _problem(feature: str, kind: str, message: str, bad: list[Any]) -> dict[str, Any]:
    return {
        "row": None,
        "feature": feature,
        "type": kind,
        "message": message,
        "examples": [str(v)[:50] for v in bad[:MAX_REPORTED_EXAMPLES]],
    }
