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
coerced: ``"0"`` is not a boolean, ``"12"`` is not a number. A boolean feature takes ``true``/
``false`` and the integers ``0``/``1``.

A numeric value outside the range the training data covered (``observed`` in the schema) is
not a problem: it is served, and the batch carries a warning naming the row and the feature.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelserve.core.errors import ValidationFailed
from modelserve.inference.columns import (
    ABSENT,
    MAX_REPORTED_PROBLEMS,
    OUTSIDE_TRAINING_RANGE,
    VECTOR_MIN_ROWS,
    Column,
    RowProblems,
    Warning,
    raise_problems,
    type_name,
)
from modelserve.registry.schemas import InputSchema

__all__ = [
    "MAX_REPORTED_PROBLEMS",
    "VECTOR_MIN_ROWS",
    "CompiledValidator",
    "ValidatedBatch",
    "WarningCounter",
]


@dataclass(frozen=True)
class ValidatedBatch:
    """Validated instances as one array per feature, in schema order."""

    columns: dict[str, np.ndarray[Any, Any]]
    n_rows: int
    log_safe: bool = False
    """True when the payload holds nothing the prediction log must escape (no NaN, no integer
    beyond 64 bits, no NUL character), so it can be logged as it came."""
    warnings: list[dict[str, Any]] | None = None
    """Values served though outside the training range: the first ``MAX_REPORTED_PROBLEMS``
    as ``{row, feature, type, message}``, by row then schema order; None when there are none."""
    warning_counts: dict[str, int] | None = None
    """How many values of each feature were outside the training range (all of them)."""
    matrix: np.ndarray[Any, Any] | None = None
    """The same values as one float64 matrix in schema order, when ``inference.intake`` built
    it (``columns`` are then views of its columns)."""


class WarningCounter:
    """Values served outside their training range, per (model, feature), for /metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, model: str, counts: Mapping[str, int]) -> None:
        """Count one request's warnings (feature -> values)."""
        with self._lock:
            for feature, count in counts.items():
                key = (model, feature)
                self._counts[key] = self._counts.get(key, 0) + count

    def snapshot(self) -> dict[tuple[str, str], int]:
        """The counts so far."""
        with self._lock:
            return dict(self._counts)


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
            raise_problems(self.items, self.total, what)


class CompiledValidator:
    """Validates payloads for one schema; build once per version and reuse."""

    def __init__(self, schema: InputSchema, *, max_rows: int) -> None:
        self.schema = schema
        self.max_rows = max_rows
        self._columns = [Column(order, spec) for order, spec in enumerate(schema.features)]
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
        problems = RowProblems()
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
        self, instances: list[Any], problems: RowProblems
    ) -> dict[str, list[Any]]:
        """Columns of records some of which are not objects or lack or add features; those
        problems are reported, and the values they lack are marked absent."""
        found = problems.source()
        width = len(self._columns)
        for row, instance in enumerate(instances):
            if not isinstance(instance, dict):
                message = f"an instance must be an object, got {type_name(instance)}"
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
                instance.get(c.name, ABSENT) if isinstance(instance, dict) else ABSENT
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
        problems = RowProblems()
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
                message = f"column names must be strings, got {type_name(name)}"
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
        self, data: list[Any], width: int, problems: RowProblems
    ) -> list[list[Any]]:
        """Columns of rows some of which are not arrays of one value per column; those problems
        are reported, and their values are marked absent."""
        found = problems.source()
        transposed: list[list[Any]] = [[ABSENT] * len(data) for _ in range(width)]
        for row, values in enumerate(data):
            if not isinstance(values, list):
                message = f"a row must be an array, got {type_name(values)}"
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
        problems: RowProblems,
        what: str,
    ) -> ValidatedBatch:
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        safe = self._plain_texts
        warnings: list[Warning] = []
        for column in self._columns:
            array, column_safe = column.validate(values[column.name], problems, warnings)
            arrays[column.name] = array
            safe = safe and column_safe
        problems.raise_if_any(what)
        if warnings:
            return _with_warnings(ValidatedBatch(arrays, n_rows, safe), warnings)
        return ValidatedBatch(columns=arrays, n_rows=n_rows, log_safe=safe)


def _with_warnings(batch: ValidatedBatch, warnings: list[Warning]) -> ValidatedBatch:
    warnings.sort(key=lambda w: (w[0], w[1]))
    counts: dict[str, int] = {}
    for _, _, feature, _ in warnings:
        counts[feature] = counts.get(feature, 0) + 1
    items = [
        {"row": row, "feature": feature, "type": OUTSIDE_TRAINING_RANGE, "message": message}
        for row, _, feature, message in warnings[:MAX_REPORTED_PROBLEMS]
    ]
    return ValidatedBatch(batch.columns, batch.n_rows, batch.log_safe, items, counts)
