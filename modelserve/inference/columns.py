"""One feature's compiled checks, for ``validation``: a column of raw values in, a typed numpy
array out, every problem collected with its row.

A column of at least ``VECTOR_MIN_ROWS`` values whose Python types are already right is
converted and checked with numpy in a few vectorised operations; small columns, and columns
holding a value of another type, are checked value by value. Both routes give the same arrays
and the same problems, in the same order.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from modelserve.core.errors import ValidationFailed
from modelserve.registry.schemas import FeatureSpec, FeatureType

MAX_REPORTED_PROBLEMS = 1000
VECTOR_MIN_ROWS = 16
"""Columns at least this long are checked with numpy; shorter ones value by value (cheaper for
the few values of a small request)."""

Check = Callable[[Any], tuple[Any, str | None, str | None]]
"""value -> (converted value, problem type, problem message)."""

_INT64_MIN = -(2**63)
_UINT64_END = 2**64
_LOG_INT_LIMIT = float(2**63)
"""Integers outside [-2**63, 2**64) cannot be logged as JSON integers (see ``loggable``); a column
with a magnitude this large is logged through ``loggable``."""


class _Absent:
    """Stands for a value a malformed row does not have (its problem is already reported)."""

    __slots__ = ()


ABSENT = _Absent()

Problem = tuple[int, int, str | None, str, str]
"""(row, feature order, feature, type, message): sorted by row, then order."""


def raise_problems(items: list[dict[str, Any]], total: int, what: str) -> None:
    """Raise ValidationFailed with ``items`` (the first problems) out of ``total``."""
    shown = len(items)
    suffix = "" if shown == total else f" (first {shown} shown)"
    raise ValidationFailed(f"{total} problem(s) in the {what}{suffix}.", details=items)


class RowProblems:
    """Problems of rows and values, from several sources each already in (row, order) order.

    Each source keeps its first ``MAX_REPORTED_PROBLEMS``: the first that many of the merged
    order can come from no further down any one source."""

    def __init__(self) -> None:
        self.sources: list[list[Problem]] = []
        self.total = 0

    def source(self) -> list[Problem]:
        items: list[Problem] = []
        self.sources.append(items)
        return items

    def add(self, items: list[Problem], problem: Problem) -> None:
        self.total += 1
        if len(items) < MAX_REPORTED_PROBLEMS:
            items.append(problem)

    def raise_if_any(self, what: str) -> None:
        if not self.total:
            return
        merged = heapq.merge(*self.sources, key=lambda p: (p[0], p[1]))
        items = [
            {"row": row, "feature": feature, "type": kind, "message": message}
            for row, _, feature, kind, message in _take(merged, MAX_REPORTED_PROBLEMS)
        ]
        raise_problems(items, self.total, what)


def _take(items: Iterable[Problem], count: int) -> list[Problem]:
    taken: list[Problem] = []
    for item in items:
        if len(taken) == count:
            break
        taken.append(item)
    return taken


def type_name(value: Any) -> str:
    """How a problem message names the JSON type of ``value``."""
    return (
        "null"
        if value is None
        else {
            bool: "boolean",
            str: "string",
            int: "integer",
            float: "number",
            list: "array",
            dict: "object",
        }.get(type(value), type(value).__name__)
    )


def _check_range(spec: FeatureSpec, number: float) -> tuple[str | None, str | None]:
    if math.isnan(number):
        if spec.nullable:
            return None, None
        return "not_finite", "NaN is not allowed (feature is not nullable)"
    if math.isinf(number):
        return "not_finite", "infinity is not allowed"
    if spec.minimum is not None and number < spec.minimum:
        return "out_of_range", f"{number} is below the minimum {spec.minimum}"
    if spec.maximum is not None and number > spec.maximum:
        return "out_of_range", f"{number} is above the maximum {spec.maximum}"
    return None, None


def _numeric_check(spec: FeatureSpec) -> Check:
    integer = spec.type is FeatureType.INTEGER
    expected = "an integer" if integer else "a number"

    def check(value: Any) -> tuple[Any, str | None, str | None]:
        kind = type(value)
        if kind is not int and kind is not float:
            return None, "wrong_type", f"expected {expected}, got {type_name(value)}"
        try:
            number = float(value)
        except OverflowError:
            return None, "out_of_range", "integer too large for a 64-bit float"
        if integer and kind is float and math.isfinite(number) and not number.is_integer():
            return None, "wrong_type", f"expected an integer, got {value}"
        problem, message = _check_range(spec, number)
        return number, problem, message

    return check


def _boolean_check(_: FeatureSpec) -> Check:
    def check(value: Any) -> tuple[Any, str | None, str | None]:
        if value is True:
            return 1.0, None, None
        if value is False:
            return 0.0, None, None
        if type(value) is int and value in (0, 1):
            return float(value), None, None
        got = value if type(value) is int else type_name(value)
        return None, "wrong_type", f"expected a boolean (true/false or 0/1), got {got}"

    return check


def _category_check(spec: FeatureSpec) -> Check:
    allowed = frozenset(spec.categories or ())
    shown = ", ".join(repr(c) for c in (spec.categories or [])[:20])

    def check(value: Any) -> tuple[Any, str | None, str | None]:
        if type(value) is not str:
            return None, "wrong_type", f"expected a string category, got {type_name(value)}"
        if value not in allowed:
            return None, "not_allowed", f"{value!r} is not one of the allowed values: {shown}"
        return value, None, None

    return check


_CHECK_BUILDERS: dict[FeatureType, Callable[[FeatureSpec], Check]] = {
    FeatureType.NUMBER: _numeric_check,
    FeatureType.INTEGER: _numeric_check,
    FeatureType.BOOLEAN: _boolean_check,
    FeatureType.CATEGORY: _category_check,
}

_NUMBER_TYPES = frozenset({int, float})
_NULLABLE_NUMBER_TYPES = frozenset({int, float, type(None)})
_BOOLEAN_TYPES = frozenset({bool, int})

Warning = tuple[int, int, str, str]
"""(row, feature order, feature, message) of a value served but outside the training range."""
OUTSIDE_TRAINING_RANGE = "outside_training_range"
"""The type of a range warning."""


def _range_message(number: float, low: float, high: float) -> str:
    if number < low:
        return f"{number:g} is below the smallest value seen in training ({low:g})"
    return f"{number:g} is above the largest value seen in training ({high:g})"


class Column:
    """One feature's compiled checks: a column of raw values in, a typed array out."""

    def __init__(self, order: int, spec: FeatureSpec) -> None:
        self.order = order
        self.spec = spec
        self.name = spec.name
        self.check = _CHECK_BUILDERS[spec.type](spec)
        self.numeric = spec.type in (FeatureType.NUMBER, FeatureType.INTEGER)
        self.integer = spec.type is FeatureType.INTEGER
        self.category = spec.type is FeatureType.CATEGORY
        self.allowed = frozenset(spec.categories or ())
        self.number_types = _NULLABLE_NUMBER_TYPES if spec.nullable else _NUMBER_TYPES
        self.soft = spec.soft_range if self.numeric else None

    def validate(
        self, values: Sequence[Any], problems: RowProblems, warnings: list[Warning]
    ) -> tuple[np.ndarray[Any, Any], bool]:
        """The column as an array, and whether its values can be logged as they came; problems
        go to ``problems``, values outside the training range to ``warnings``."""
        if len(values) >= VECTOR_MIN_ROWS:
            types = set(map(type, values))
            if self.numeric and types <= self.number_types:
                vectorised = self._numbers(values, types, problems)
                if vectorised is not None:
                    if self.soft is not None:
                        self._outside(vectorised[0], warnings)
                    return vectorised
            elif self.spec.type is FeatureType.BOOLEAN and types <= _BOOLEAN_TYPES:
                array = np.array(values, dtype=np.float64)
                if int not in types or bool(((array == 0.0) | (array == 1.0)).all()):
                    return array, True
            elif self.category and types == {str} and self.allowed.issuperset(values):
                return np.array(values, dtype=object), True
        return self._one_by_one(values, problems, warnings)

    def _outside(self, array: np.ndarray[Any, Any], warnings: list[Warning]) -> None:
        """Warn for the values outside the training range: the column's min and max (two
        reductions); rows are looked at only when one is outside, or a NaN (a null) hides
        the answer. NaN compares false, so a null is never warned."""
        assert self.soft is not None
        low, high = self.soft
        if array.min() >= low and array.max() <= high:
            return
        with np.errstate(invalid="ignore"):
            outside = (array < low) | (array > high)
        for row in np.flatnonzero(outside).tolist():
            number = float(array[row])
            warnings.append((row, self.order, self.name, _range_message(number, low, high)))

    def _one_by_one(
        self, values: Sequence[Any], problems: RowProblems, warnings: list[Warning]
    ) -> tuple[np.ndarray[Any, Any], bool]:
        found: list[Problem] | None = None
        missing: Any = None if self.category else math.nan
        converted: list[Any] = []
        append = converted.append
        safe = True
        check, nullable, numeric = self.check, self.spec.nullable, self.numeric
        low, high = self.soft or (-math.inf, math.inf)
        for row, value in enumerate(values):
            if value is None or value is ABSENT:
                append(missing)
                if value is None and not nullable:
                    found = found if found is not None else problems.source()
                    problems.add(found, (row, self.order, self.name, "null", "null is not allowed"))
                continue
            result, kind, message = check(value)
            if kind is not None:
                append(missing)
                found = found if found is not None else problems.source()
                problems.add(found, (row, self.order, self.name, kind, message or kind))
                continue
            append(result)
            if numeric:
                if math.isnan(result) or (
                    type(value) is int and not _INT64_MIN <= value < _UINT64_END
                ):
                    safe = False
                elif result < low or result > high:
                    message = _range_message(result, low, high)
                    warnings.append((row, self.order, self.name, message))
        return np.array(converted, dtype=object if self.category else np.float64), safe

    def _numbers(
        self, values: Sequence[Any], types: set[type], problems: RowProblems
    ) -> tuple[np.ndarray[Any, Any], bool] | None:
        """Numbers (and nulls, when nullable) checked with numpy; None when a value needs the
        one-by-one route (an integer too large for a float)."""
        try:
            array = np.array(values, dtype=np.float64)  # null -> NaN
        except (OverflowError, TypeError, ValueError):
            return None
        spec = self.spec
        safe = True
        finite = np.isfinite(array)
        all_finite = bool(finite.all())
        bad: list[tuple[int, str, str]] = []
        if not all_finite:
            for row in np.flatnonzero(~finite).tolist():
                number = float(array[row])
                if math.isnan(number):
                    if spec.nullable:
                        safe = safe and values[row] is None  # a NaN float is escaped in the log
                        continue
                    bad.append((row, "not_finite", "NaN is not allowed (feature is not nullable)"))
                else:
                    bad.append((row, "not_finite", "infinity is not allowed"))
        checked = finite
        if self.integer and float in types:
            with np.errstate(invalid="ignore"):
                fractional = finite & (array != np.floor(array))
            if fractional.any():
                for row in np.flatnonzero(fractional).tolist():
                    bad.append((row, "wrong_type", f"expected an integer, got {values[row]}"))
                checked = finite & ~fractional
        with np.errstate(invalid="ignore"):
            if spec.minimum is not None:
                for row in np.flatnonzero(checked & (array < spec.minimum)).tolist():
                    number = float(array[row])
                    message = f"{number} is below the minimum {spec.minimum}"
                    bad.append((row, "out_of_range", message))
            if spec.maximum is not None:
                for row in np.flatnonzero(checked & (array > spec.maximum)).tolist():
                    number = float(array[row])
                    message = f"{number} is above the maximum {spec.maximum}"
                    bad.append((row, "out_of_range", message))
            if int in types and safe:  # integers beyond 64 bits are escaped in the log
                safe = not bool((np.abs(array) >= _LOG_INT_LIMIT).any())
        if bad:
            found = problems.source()
            for row, kind, message in sorted(bad):
                problems.add(found, (row, self.order, self.name, kind, message))
        return array, safe
