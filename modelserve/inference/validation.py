"""Compile a version's input schema once into a validator that turns a payload into columns.

Two request forms are accepted (see the README):

* records: ``{"instances": [{feature: value, ...}, ...]}``;
* columnar: ``{"columns": [feature, ...], "data": [[value, ...], ...]}``, every feature of the
  schema named exactly once, in any order; each row of ``data`` gives one value per column.

Both are checked one feature (column) at a time: a column of at least ``VECTOR_MIN_ROWS`` values
whose Python types are already right is converted and checked with numpy in a few vectorised
operations; small columns, and columns holding a value of another type, are checked value by
value. Both routes give the same arrays and report the same problems, in the same order (by row,
then by the feature's place in the schema), so neither the form nor the batch size changes an
answer.

Every problem is collected (row index and feature) before anything reaches the model; nothing is
coerced: ``"0"`` is not a boolean, ``"12"`` is not a number, ``1`` is not ``true``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelserve.core.errors import ValidationFailed
from modelserve.registry.schemas import FeatureSpec, FeatureType, InputSchema

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


_ABSENT = _Absent()

Problem = tuple[int, int, str | None, str, str]
"""(row, feature order, feature, type, message): sorted by row, then order."""


@dataclass(frozen=True)
class ValidatedBatch:
    """Validated instances as one array per feature, in schema order."""

    columns: dict[str, np.ndarray[Any, Any]]
    n_rows: int
    log_safe: bool = False
    """True when the payload holds nothing the prediction log must escape (no NaN, no integer
    beyond 64 bits, no NUL character), so it can be logged as it came."""


class _Problems:
    """Envelope problems: the first ``MAX_REPORTED_PROBLEMS`` kept, the rest counted."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.total = 0

    def add(self, row: int | None, feature: str | None, kind: str, message: str) -> None:
        self.total += 1
        if len(self.items) < MAX_REPORTED_PROBLEMS:
            self.items.append({"row": row, "feature": feature, "type": kind, "message": message})

    def raise_if_any(self, what: str) -> None:
        if self.total:
            _raise(self.items, self.total, what)


def _raise(items: list[dict[str, Any]], total: int, what: str) -> None:
    shown = len(items)
    suffix = "" if shown == total else f" (first {shown} shown)"
    raise ValidationFailed(f"{total} problem(s) in the {what}{suffix}.", details=items)


class _RowProblems:
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
        _raise(items, self.total, what)


def _take(items: Iterable[Problem], count: int) -> list[Problem]:
    taken: list[Problem] = []
    for item in items:
        if len(taken) == count:
            break
        taken.append(item)
    return taken


def _type_name(value: Any) -> str:
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
            return None, "wrong_type", f"expected {expected}, got {_type_name(value)}"
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
        return None, "wrong_type", f"expected a boolean (true/false), got {_type_name(value)}"

    return check


def _category_check(spec: FeatureSpec) -> Check:
    allowed = frozenset(spec.categories or ())
    shown = ", ".join(repr(c) for c in (spec.categories or [])[:20])

    def check(value: Any) -> tuple[Any, str | None, str | None]:
        if type(value) is not str:
            return None, "wrong_type", f"expected a string category, got {_type_name(value)}"
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


class _Column:
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

    def validate(
        self, values: Sequence[Any], problems: _RowProblems
    ) -> tuple[np.ndarray[Any, Any], bool]:
        """The column as an array, and whether its values can be logged as they came; problems
        go to ``problems``."""
        if len(values) >= VECTOR_MIN_ROWS:
            types = set(map(type, values))
            if self.numeric and types <= self.number_types:
                vectorised = self._numbers(values, types, problems)
                if vectorised is not None:
                    return vectorised
            elif self.spec.type is FeatureType.BOOLEAN and types == {bool}:
                return np.array(values, dtype=np.float64), True
            elif self.category and types == {str} and self.allowed.issuperset(values):
                return np.array(values, dtype=object), True
        return self._one_by_one(values, problems)

    def _one_by_one(
        self, values: Sequence[Any], problems: _RowProblems
    ) -> tuple[np.ndarray[Any, Any], bool]:
        found: list[Problem] | None = None
        missing: Any = None if self.category else math.nan
        converted: list[Any] = []
        append = converted.append
        safe = True
        check, nullable, numeric = self.check, self.spec.nullable, self.numeric
        for row, value in enumerate(values):
            if value is None or value is _ABSENT:
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
            if numeric and (
                math.isnan(result) or (type(value) is int and not _INT64_MIN <= value < _UINT64_END)
            ):
                safe = False
        return np.array(converted, dtype=object if self.category else np.float64), safe

    def _numbers(
        self, values: Sequence[Any], types: set[type], problems: _RowProblems
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


class CompiledValidator:
    """Validates payloads for one schema; build once per version and reuse."""

    def __init__(self, schema: InputSchema, *, max_rows: int) -> None:
        self.schema = schema
        self.max_rows = max_rows
        self._columns = [_Column(order, spec) for order, spec in enumerate(schema.features)]
        self._by_name = {column.name: column for column in self._columns}
        self._names = frozenset(schema.names)
        # Names and categories are echoed into the log as they came; one with a NUL character
        # would need escaping, so such a schema always goes through ``loggable``.
        texts = [*schema.names, *(c for f in schema.features for c in f.categories or ())]
        self._plain_texts = not any("\x00" in text for text in texts)

    def validate(self, payload: Any) -> ValidatedBatch:
        """Check a records (``instances``) or columnar (``columns`` + ``data``) payload and return
        its columns; raise ValidationFailed listing every problem otherwise."""
        if isinstance(payload, dict):
            if "instances" in payload:
                return self._validate_instances(payload)
            if "columns" in payload or "data" in payload:
                return self._validate_columnar(payload)
        raise ValidationFailed(
            "Body must be a JSON object with an 'instances' list, or 'columns' and 'data'.",
            details=[
                {
                    "row": None,
                    "feature": None,
                    "type": "missing",
                    "message": "'instances' (or 'columns' and 'data') is required",
                }
            ],
        )

    # Records: {"instances": [{...}, ...]}

    def _validate_instances(self, payload: dict[str, Any]) -> ValidatedBatch:
        instances = payload["instances"]
        envelope = _Problems()
        for key in sorted(set(payload) - {"instances"}):
            envelope.add(None, None, "unknown_field", f"unknown top-level field {key!r}")
        if not isinstance(instances, list):
            envelope.add(None, None, "wrong_type", "'instances' must be a list of objects")
        else:
            self._check_count(len(instances), "instances", "instances", envelope)
        envelope.raise_if_any("instances")
        problems = _RowProblems()
        names = self._names
        width = len(self._columns)
        regular = True
        for instance in instances:
            if not (
                isinstance(instance, dict) and len(instance) == width and names.issuperset(instance)
            ):
                regular = False
                break
        if regular:
            values = {c.name: [instance[c.name] for instance in instances] for c in self._columns}
        else:
            values = self._irregular_instances(instances, problems)
        return self._finish(values, len(instances), problems, "instances")

    def _irregular_instances(
        self, instances: list[Any], problems: _RowProblems
    ) -> dict[str, list[Any]]:
        """Columns of records some of which are not objects or lack or add features; those
        problems are reported, and the values they lack are marked absent."""
        found = problems.source()
        width = len(self._columns)
        for row, instance in enumerate(instances):
            if not isinstance(instance, dict):
                message = f"an instance must be an object, got {_type_name(instance)}"
                problems.add(found, (row, -1, None, "wrong_type", message))
                continue
            for column in self._columns:
                if column.name not in instance:
                    problem = (row, column.order, column.name, "missing", "feature is missing")
                    problems.add(found, problem)
            if len(instance) > width or not self._names.issuperset(instance):
                for key in instance:
                    if key not in self._names:
                        message = "feature is not in the schema"
                        problems.add(found, (row, width, str(key), "unknown_feature", message))
        return {
            c.name: [
                instance.get(c.name, _ABSENT) if isinstance(instance, dict) else _ABSENT
                for instance in instances
            ]
            for c in self._columns
        }

    # Columnar: {"columns": [...], "data": [[...], ...]}

    def _validate_columnar(self, payload: dict[str, Any]) -> ValidatedBatch:
        envelope = _Problems()
        for key in sorted(set(payload) - {"columns", "data"}):
            envelope.add(None, None, "unknown_field", f"unknown top-level field {key!r}")
        columns = payload.get("columns")
        data = payload.get("data")
        if "columns" not in payload:
            envelope.add(None, None, "missing", "'columns' is required with 'data'")
        elif not isinstance(columns, list) or not columns:
            envelope.add(None, None, "wrong_type", "'columns' must be a non-empty list of names")
        else:
            self._check_header(columns, envelope)
        if "data" not in payload:
            envelope.add(None, None, "missing", "'data' is required with 'columns'")
        elif not isinstance(data, list):
            envelope.add(None, None, "wrong_type", "'data' must be a list of rows (arrays)")
        else:
            self._check_count(len(data), "data", "rows", envelope)
        envelope.raise_if_any("columns and data")
        assert isinstance(columns, list)
        assert isinstance(data, list)
        problems = _RowProblems()
        width = len(columns)
        if all(type(row) is list and len(row) == width for row in data):
            transposed: Sequence[Sequence[Any]] = list(zip(*data, strict=True))
        else:
            transposed = self._irregular_rows(data, width, problems)
        values = {name: transposed[position] for position, name in enumerate(columns)}
        return self._finish(values, len(data), problems, "columns and data")

    def _check_header(self, columns: list[Any], envelope: _Problems) -> None:
        seen: set[str] = set()
        for name in columns:
            if not isinstance(name, str):
                message = f"column names must be strings, got {_type_name(name)}"
                envelope.add(None, None, "wrong_type", message)
            elif name not in self._names:
                envelope.add(None, name, "unknown_feature", "feature is not in the schema")
            elif name in seen:
                envelope.add(None, name, "duplicate", "column is named more than once")
            else:
                seen.add(name)
        for column in self._columns:
            if column.name not in seen:
                envelope.add(None, column.name, "missing", "feature is missing")

    def _irregular_rows(
        self, data: list[Any], width: int, problems: _RowProblems
    ) -> list[list[Any]]:
        """Columns of rows some of which are not arrays of one value per column; those problems
        are reported, and their values are marked absent."""
        found = problems.source()
        transposed: list[list[Any]] = [[_ABSENT] * len(data) for _ in range(width)]
        for row, values in enumerate(data):
            if not isinstance(values, list):
                message = f"a row must be an array, got {_type_name(values)}"
                problems.add(found, (row, -1, None, "wrong_type", message))
            elif len(values) != width:
                message = f"the row has {len(values)} values; expected {width}, one per column"
                problems.add(found, (row, -1, None, "wrong_length", message))
            else:
                for position, value in enumerate(values):
                    transposed[position][row] = value
        return transposed

    # Shared

    def _check_count(self, count: int, field: str, unit: str, envelope: _Problems) -> None:
        if count == 0:
            envelope.add(None, None, "empty", f"'{field}' is empty")
        elif count > self.max_rows:
            message = f"{count} {unit}; at most {self.max_rows} per request"
            envelope.add(None, None, "too_many", message)

    def _finish(
        self,
        values: Mapping[str, Sequence[Any]],
        n_rows: int,
        problems: _RowProblems,
        what: str,
    ) -> ValidatedBatch:
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        safe = self._plain_texts
        for column in self._columns:
            array, column_safe = column.validate(values[column.name], problems)
            arrays[column.name] = array
            safe = safe and column_safe
        problems.raise_if_any(what)
        return ValidatedBatch(columns=arrays, n_rows=n_rows, log_safe=safe)
