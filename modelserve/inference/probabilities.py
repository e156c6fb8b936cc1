"""A classifier's probabilities, one ``{label: probability}`` per row, kept as their matrix.

The v1 answer and the prediction log spell probabilities as one JSON object per row. Making
those objects in Python costs more than the model for a cheap one (about 60 us for 100 rows of
two classes here, plus orjson walking them once for the answer and once for the log);
``ProbabilityRows.json`` writes the same text from the matrix instead: orjson spells the numbers,
and one bytes format puts the labels between them (about 14 us). The dicts are made only when
asked for (the ONNX twin check, a test).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
import orjson


def _plain(label: str) -> bool:
    """Whether a label is written as itself in JSON and needs no escape in any store."""
    return label.isascii() and label.isprintable() and '"' not in label and "\\" not in label


class ProbabilityRows(Sequence[dict[str, float]]):
    """Rows of ``{label: probability}`` over a float64 matrix (rows x labels, finite)."""

    __slots__ = ("_json", "labels", "matrix")

    def __init__(self, labels: list[str], matrix: np.ndarray[Any, Any]) -> None:
        self.labels = labels
        self.matrix = matrix
        self._json: orjson.Fragment | None = None

    def __len__(self) -> int:
        return len(self.matrix)

    @overload
    def __getitem__(self, index: int) -> dict[str, float]: ...

    @overload
    def __getitem__(self, index: slice) -> ProbabilityRows: ...

    def __getitem__(self, index: int | slice) -> dict[str, float] | ProbabilityRows:
        if isinstance(index, slice):
            return ProbabilityRows(self.labels, self.matrix[index])
        return dict(zip(self.labels, self.matrix[index].tolist(), strict=True))

    def __iter__(self) -> Iterator[dict[str, float]]:
        labels = self.labels
        return (dict(zip(labels, row, strict=True)) for row in self.matrix.tolist())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like the list it stands for

    def __repr__(self) -> str:
        return f"ProbabilityRows({list(self)!r})"

    def json(self) -> Any:
        """The rows as JSON: an ``orjson.Fragment`` of the very text orjson would give for the
        dicts, written from the matrix (the dicts themselves for labels that need escaping)."""
        if self._json is not None:
            return self._json
        labels = self.labels
        rows, width = self.matrix.shape
        if not rows or not width or len(set(labels)) != width or not all(map(_plain, labels)):
            return list(self)
        numbers = orjson.dumps(np.ascontiguousarray(self.matrix), option=orjson.OPT_SERIALIZE_NUMPY)
        if width == 2:
            self._json = orjson.Fragment(_two_labels(numbers, labels))
            return self._json
        values = numbers.replace(b"[", b"").replace(b"]", b"").split(b",")
        keys = [orjson.dumps(label).replace(b"%", b"%%") for label in labels]
        row = b"{" + b",".join(key + b":%s" for key in keys) + b"}"
        self._json = orjson.Fragment(b"[" + b",".join([row] * rows) % tuple(values) + b"]")
        return self._json


def _two_labels(numbers: bytes, labels: list[str]) -> bytes:
    """The rows' JSON from orjson's text of a two-column matrix, ``[[a,b],[c,d]]``, by three
    replacements (a binary classifier's probabilities; half the time of the general way): the
    only commas left once the rows' separators are set aside are those between a row's two
    numbers."""
    first, second = (orjson.dumps(label) for label in labels)
    rows = numbers[2:-2].replace(b"],[", b"\n")  # no line break in orjson's text
    rows = rows.replace(b",", b"," + second + b":")
    return b"[{" + first + b":" + rows.replace(b"\n", b"},{" + first + b":") + b"}]"


def probabilities_json(probabilities: Sequence[dict[str, float]] | None) -> Any:
    """Probabilities ready for orjson: ``ProbabilityRows.json`` for rows kept as a matrix."""
    if isinstance(probabilities, ProbabilityRows):
        return probabilities.json()
    return probabilities
