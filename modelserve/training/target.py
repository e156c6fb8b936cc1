"""The training target: read with a clean dtype, checked for the task, labels made JSON-able."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_float_dtype, is_integer_dtype, is_object_dtype

from modelserve.core.errors import ValidationFailed
from modelserve.registry.schemas import Label
from modelserve.training.estimators import Task
from modelserve.training.schema_inference import as_text


def target_series(col: pd.Series[Any], *, read_as_float: bool) -> pd.Series[Any]:
    """The present target values with a clean dtype: bool, int64, float64 or object of str.

    A float column of whole numbers becomes int64 when it had missing values (that is how
    pandas reads an integer column with gaps), so a 0/1 label with gaps stays a class label.
    """
    dtype = col.dtype
    if is_bool_dtype(dtype):
        return col.astype(bool)
    if is_integer_dtype(dtype):
        return col.astype(np.int64)
    if is_float_dtype(dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        whole = np.isfinite(values).all() and bool((values == np.round(values)).all())
        if read_as_float and whole and bool((np.abs(values) < 2**53).all()):
            return pd.Series(values.astype(np.int64), index=col.index)
        return pd.Series(values, index=col.index)
    values_list = col.tolist()
    if is_object_dtype(dtype):
        if all(isinstance(v, bool | np.bool_) for v in values_list):
            return pd.Series([bool(v) for v in values_list], index=col.index, dtype=bool)
        if all(isinstance(v, int | np.integer) for v in values_list):
            return pd.Series([int(v) for v in values_list], index=col.index, dtype=np.int64)
    return pd.Series([as_text(v) for v in values_list], index=col.index, dtype=object)


def checked_target(y: pd.Series[Any], task: Task, target: str) -> np.ndarray[Any, Any]:
    """The target as an array, checked for the task."""
    if task == "regression":
        numeric = is_integer_dtype(y.dtype) or is_float_dtype(y.dtype)
        if not numeric or is_bool_dtype(y.dtype):
            raise ValidationFailed(
                f"Regression needs a numeric target; {target!r} is not numeric.",
                details={"target": target, "examples": [str(v) for v in y.head(5).tolist()]},
            )
        values = y.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValidationFailed(
                f"The target {target!r} has infinite values.", details={"target": target}
            )
        return values
    counts = y.value_counts()
    if len(counts) < 2:
        raise ValidationFailed(
            f"The target {target!r} has a single class; classification needs at least two.",
            details={"target": target, "classes": [label(c) for c in counts.index.tolist()]},
        )
    rare = [label(c) for c, n in counts.items() if n < 2]
    if rare:
        raise ValidationFailed(
            f"Every class needs at least 2 rows; {len(rare)} class(es) of {target!r} have one.",
            details={"target": target, "classes_with_one_row": rare[:50]},
        )
    return y.to_numpy()


def label(value: Any) -> Label:
    """A class label as a JSON-able Python value."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | bool | int | float):
        return value
    return str(value)
