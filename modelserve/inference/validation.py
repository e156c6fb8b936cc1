"""Compile a version's input schema once into a validator that turns a payload into columns.

Every problem is collected (row index and feature) before anything reaches the model; nothing is
coerced: ``"0"`` is not a boolean, ``"12"`` is not a number, ``1`` is not ``true``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelserve.core.errors import ValidationFailed
from modelserve.registry.schemas import FeatureSpec, FeatureType, InputSchema

MAX_REPORTED_PROBLEMS = 1000

Check = Callable[[Any], tuple[Any, str | None, str | None]]
"""value -> (converted value, problem type, problem message)."""


@dataclass(frozen=True)
class ValidatedBatch:
    """Validated instances as one array per feature, in schema order."""

    columns: dict[str, np.ndarray[Any, Any]]
    n_rows: int


class _Problems:
    """Collects problems, keeping the first ``MAX_REPORTED_PROBLEMS`` and counting the rest."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.total = 0

    def add(self, row: int | None, feature: str | None, kind: str, message: str) -> None:
        self.total += 1
        if len(self.items) < MAX_REPORTED_PROBLEMS:
            self.items.append({"row": row, "feature": feature, "type": kind, "message": message})

    def raise_if_any(self) -> None:
        if self.total:
            shown = len(self.items)
            suffix = "" if shown == self.total else f" (first {shown} shown)"
            raise ValidationFailed(
                f"{self.total} problem(s) in the instances{suffix}.", details=self.items
            )


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


class CompiledValidator:
    """Validates payloads for one schema; build once per version and reuse."""

    def __init__(self, schema: InputSchema, *, max_rows: int) -> None:
        self.schema = schema
        self.max_rows = max_rows
        self._features = [(f, _CHECK_BUILDERS[f.type](f)) for f in schema.features]
        self._names = frozenset(schema.names)

    def validate(self, payload: Any) -> ValidatedBatch:
        """Check ``{"instances": [...]}`` and return its columns; raise ValidationFailed listing
        every problem otherwise."""
        instances = self._instances(payload)
        problems = _Problems()
        raw: dict[str, list[Any]] = {f.name: [None] * len(instances) for f, _ in self._features}
        for row, instance in enumerate(instances):
            self._validate_row(row, instance, raw, problems)
        problems.raise_if_any()
        return ValidatedBatch(columns=self._to_arrays(raw), n_rows=len(instances))

    def _instances(self, payload: Any) -> list[Any]:
        if not isinstance(payload, dict) or "instances" not in payload:
            raise ValidationFailed(
                "Body must be a JSON object with an 'instances' list.",
                details=[
                    {
                        "row": None,
                        "feature": None,
                        "type": "missing",
                        "message": "'instances' is required",
                    }
                ],
            )
        extra = sorted(set(payload) - {"instances"})
        instances = payload["instances"]
        problems = _Problems()
        for key in extra:
            problems.add(None, None, "unknown_field", f"unknown top-level field {key!r}")
        if not isinstance(instances, list):
            problems.add(None, None, "wrong_type", "'instances' must be a list of objects")
        elif not instances:
            problems.add(None, None, "empty", "'instances' is empty")
        elif len(instances) > self.max_rows:
            problems.add(
                None,
                None,
                "too_many",
                f"{len(instances)} instances; at most {self.max_rows} per request",
            )
        problems.raise_if_any()
        return list(instances)

    def _validate_row(
        self, row: int, instance: Any, raw: dict[str, list[Any]], problems: _Problems
    ) -> None:
        if not isinstance(instance, dict):
            problems.add(
                row,
                None,
                "wrong_type",
                f"an instance must be an object, got {_type_name(instance)}",
            )
            return
        for spec, check in self._features:
            if spec.name not in instance:
                problems.add(row, spec.name, "missing", "feature is missing")
                continue
            value = instance[spec.name]
            if value is None:
                if not spec.nullable:
                    problems.add(row, spec.name, "null", "null is not allowed")
                continue
            converted, kind, message = check(value)
            if kind is not None:
                problems.add(row, spec.name, kind, message or kind)
            else:
                raw[spec.name][row] = converted
        if len(instance) > len(self._features) or not self._names.issuperset(instance):
            for key in instance:
                if key not in self._names:
                    problems.add(row, str(key), "unknown_feature", "feature is not in the schema")

    def _to_arrays(self, raw: dict[str, list[Any]]) -> dict[str, np.ndarray[Any, Any]]:
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        for spec, _ in self._features:
            values = raw[spec.name]
            if spec.type is FeatureType.CATEGORY:
                arrays[spec.name] = np.array(values, dtype=object)
            else:
                arrays[spec.name] = np.array(
                    [math.nan if v is None else v for v in values], dtype=np.float64
                )
        return arrays
