"""``ProbabilityRows`` writes the very JSON orjson writes for the dicts it stands for."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from modelserve.inference.probabilities import ProbabilityRows, probabilities_json

LABELS = {
    "digits": ["0", "1"],
    "words": ["setosa", "versicolor", "virginica"],
    "percent and brackets": ["50%", "[x]", "a,b", "%s", "{}"],
    "one class": ["only"],
    "needs escaping": ['say "hi"', "back\\slash", "tab\t", "é"],
}


def matrix(rows: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.random((rows, width))
    values[0, 0] = 0.0
    values[-1, -1] = -0.0
    if rows > 2:
        values[1] = [5e-324, 1.0, 1e-300, 0.1 + 0.2, 1 / 3][:width]
    return values


@pytest.mark.parametrize("labels", LABELS.values(), ids=LABELS.keys())
@pytest.mark.parametrize("rows", [1, 3, 100])
def test_json_is_what_orjson_writes_for_the_dicts(labels: list[str], rows: int) -> None:
    values = matrix(rows, len(labels), seed=rows)
    probabilities = ProbabilityRows(labels, values)
    dicts = [dict(zip(labels, row, strict=True)) for row in values.tolist()]
    assert list(probabilities) == dicts
    assert probabilities == dicts
    assert probabilities[rows - 1] == dicts[-1]
    assert list(probabilities[1:]) == dicts[1:]
    assert len(probabilities) == rows
    want = orjson.dumps(dicts)
    assert orjson.dumps(probabilities_json(probabilities)) == want
    assert orjson.dumps({"p": probabilities_json(probabilities[1:])}) == orjson.dumps(
        {"p": dicts[1:]}
    )


def test_labels_that_need_escaping_are_left_to_the_dicts() -> None:
    probabilities = ProbabilityRows(LABELS["needs escaping"], matrix(2, 4, seed=0))
    assert probabilities.json() == list(probabilities)
    assert probabilities_json(None) is None
    assert probabilities_json([{"a": 1.0}]) == [{"a": 1.0}]
