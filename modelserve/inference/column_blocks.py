"""Run a pipeline's leading ColumnTransformer on numpy blocks instead of a DataFrame.

A ColumnTransformer fitted on a DataFrame selects its columns by name through pandas on every
call, and for one row that is most of a small model's cost (about 1.6 ms of 1.9 ms for the demo
pipeline; the rest of the server's work on a request is less). The fitted transformers inside
it don't need pandas: given the same values as a numpy matrix they compute the same thing. So
at load time the server copies each fitted transformer, makes the copy forget the column names
it was fitted with (so it takes a matrix without a feature-names warning), and feeds it the
validated columns directly, then stacks the blocks as ColumnTransformer does.

It is used only where the structure is plain (named columns, dense output, transformers that
are estimators or ``drop``), and only after it has given bit-identical output to the original
ColumnTransformer on a verification sample in this process; otherwise the pipeline runs as it
is. The original estimator is never modified.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from modelserve.inference.intake import numeric_rules
from modelserve.inference.validation import CompiledValidator
from modelserve.registry.schemas import InputSchema

logger = logging.getLogger(__name__)
VERIFICATION_ROWS = 200


@dataclass(frozen=True)
class _Block:
    transformer: Any
    columns: tuple[str, ...]


class ColumnBlocks:
    """A fitted ColumnTransformer's work, done on one numpy matrix per block of columns."""

    def __init__(self, blocks: list[_Block]) -> None:
        self._blocks = blocks

    def transform(self, columns: Mapping[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        """What the ColumnTransformer gives for a DataFrame of these columns."""
        parts = [
            block.transformer.transform(np.column_stack([columns[c] for c in block.columns]))
            for block in self._blocks
        ]
        return parts[0] if len(parts) == 1 else np.hstack(parts)


def compile_blocks(preprocess: Any, names: list[str]) -> ColumnBlocks | None:
    """The blocks of a fitted ColumnTransformer over ``names``, or None when its structure is
    not one this can reproduce (then nothing is verified and the original runs)."""
    if not isinstance(preprocess, ColumnTransformer) or not hasattr(preprocess, "transformers_"):
        return None
    if getattr(preprocess, "sparse_output_", False):
        return None
    known = set(names)
    blocks: list[_Block] = []
    for _, transformer, columns in preprocess.transformers_:
        if isinstance(transformer, str):
            if transformer == "drop":
                continue
            return None  # passthrough keeps the DataFrame's own dtypes: not reproduced here
        if not isinstance(columns, list | tuple) or not all(
            isinstance(c, str) and c in known for c in columns
        ):
            return None
        if not columns:
            continue  # ColumnTransformer skips empty selections too
        forgetful = copy.deepcopy(transformer)
        if not _forget_feature_names(forgetful):
            return None
        blocks.append(_Block(forgetful, tuple(columns)))
    return ColumnBlocks(blocks) if blocks else None


def _forget_feature_names(estimator: Any) -> bool:
    """Drop the fitted column names of ``estimator`` (a copy) and of a Pipeline's steps; False
    for nested composites, whose own column selection would need the names."""
    if isinstance(estimator, Pipeline):
        return all(_forget_feature_names(step) for _, step in estimator.steps)
    if hasattr(estimator, "transformers_") or hasattr(estimator, "transformer_list"):
        return False
    if "feature_names_in_" in vars(estimator):
        del estimator.feature_names_in_
    return True


def verified_blocks(
    estimator: Any, schema: InputSchema, instances: list[dict[str, Any]]
) -> ColumnBlocks | None:
    """Column blocks for a Pipeline that starts with a ColumnTransformer, if on ``instances``
    (rows inside ``schema``, e.g. ``registry.probe.sample_instances``) they give exactly what
    the ColumnTransformer gives; else None."""
    if not isinstance(estimator, Pipeline) or len(estimator.steps) < 2:
        return None
    preprocess = estimator.steps[0][1]
    blocks = compile_blocks(preprocess, schema.names)
    if blocks is None:
        return None
    import pandas as pd

    sample = CompiledValidator(schema, max_rows=len(instances)).validate({"instances": instances})
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            expected = preprocess.transform(pd.DataFrame(sample.columns, columns=schema.names))
            actual = blocks.transform(sample.columns)
    except Exception as exc:  # any failure only means the original runs
        logger.info("column blocks not used: %s: %s", type(exc).__name__, exc)
        return None
    same = (
        type(actual) is np.ndarray
        and type(expected) is np.ndarray
        and actual.dtype == expected.dtype
        and actual.shape == expected.shape
        and np.array_equal(actual, expected, equal_nan=actual.dtype.kind in "fc")
    )
    if not same:
        logger.info("column blocks not used: their output differs from the ColumnTransformer's")
        return None
    return blocks


def _plain_scikit_learn(estimator: Any) -> bool:
    steps = [s for _, s in estimator.steps] if isinstance(estimator, Pipeline) else [estimator]
    return all(
        type(step).__module__.startswith("sklearn.") or step == "passthrough" for step in steps
    )


def verified_nameless(
    estimator: Any, schema: InputSchema, instances: list[dict[str, Any]]
) -> Any | None:
    """A copy of a scikit-learn estimator or pipeline fitted on a DataFrame of exactly the
    schema's numeric features, in schema order, that takes the validated float matrix instead:
    it forgets the column names (so no DataFrame is built per request and scikit-learn does not
    check names again), used only if on ``instances`` its ``predict`` and ``predict_proba`` are
    bit-identical to the original's on the DataFrame; else None."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None or [str(n) for n in names] != schema.names:
        return None
    if numeric_rules(schema) is None:
        return None
    if not _plain_scikit_learn(estimator):
        return None
    nameless = copy.deepcopy(estimator)
    if not _forget_feature_names(nameless):
        return None
    import pandas as pd

    sample = CompiledValidator(schema, max_rows=len(instances)).validate({"instances": instances})
    frame = pd.DataFrame(sample.columns, columns=schema.names)
    matrix = np.column_stack([sample.columns[name] for name in schema.names]).astype(np.float64)
    methods = [m for m in ("predict", "predict_proba") if hasattr(estimator, m)]
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            for method in methods:
                expected = np.asarray(getattr(estimator, method)(frame))
                actual = np.asarray(getattr(nameless, method)(matrix))
                if expected.dtype != actual.dtype or not np.array_equal(
                    expected, actual, equal_nan=expected.dtype.kind in "fc"
                ):
                    logger.info("nameless copy not used: its %s differs", method)
                    return None
    except Exception as exc:  # any failure only means the original runs on a DataFrame
        logger.info("nameless copy not used: %s: %s", type(exc).__name__, exc)
        return None
    return nameless
