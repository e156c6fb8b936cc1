"""A loaded model version behind one small contract: validated columns in, labels and
probabilities out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn import config_context
from sklearn.pipeline import Pipeline

from modelserve.core.errors import ValidationFailed
from modelserve.inference.probabilities import ProbabilityRows
from modelserve.inference.validation import ValidatedBatch
from modelserve.registry.schemas import FeatureType, InputSchema, OutputSpec


class ColumnPreprocess(Protocol):
    """A verified numpy form of a pipeline's first step (``column_blocks.ColumnBlocks``)."""

    def transform(
        self, columns: Mapping[str, np.ndarray[Any, Any]]
    ) -> np.ndarray[Any, Any]: ...  # pragma: no cover


PREDICT = "predict"
PREDICT_PROBA = "predict_proba"


def labels_are_argmax_of_proba(estimator: Any) -> bool:
    """Whether ``estimator.predict`` is literally ``classes_.take(argmax(predict_proba(X)))``:
    random and extra-trees forests and histogram gradient boosting. Their labels can then come
    from the probabilities already computed instead of a second pass through the model, which
    halves its cost per request. Exact types only (a subclass may redefine predict). Single trees
    are left out, as their predict argmaxes other scores, which can tie differently after
    rounding; so is logistic regression, which ``labels_follow_clear_proba`` covers."""
    if not type(estimator).__module__.startswith("sklearn.ensemble."):
        return False  # and sklearn.ensemble need not be imported for other models
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )

    return type(estimator) in (
        RandomForestClassifier,
        ExtraTreesClassifier,
        HistGradientBoostingClassifier,
    )


NEAR_TIE = 1e-9
"""Top-two probability gap below which a logistic regression's label is asked of ``predict``."""


def labels_follow_clear_proba(estimator: Any) -> bool:
    """Whether ``estimator`` is a logistic regression: its probabilities are a monotonic map
    of the scores ``predict`` argmaxes (softmax, or the logistic function of one score), so the
    most probable class is the predicted one, except where rounding can tie the probabilities
    of two classes whose scores differ; rows within ``NEAR_TIE`` are given to ``predict``.
    Exact type only, like ``labels_are_argmax_of_proba``."""
    if type(estimator).__module__ != "sklearn.linear_model._logistic":
        return False
    from sklearn.linear_model import LogisticRegression

    return type(estimator) is LogisticRegression


def _near_ties(matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Row indices whose two largest probabilities are within ``NEAR_TIE``."""
    if matrix.shape[1] < 2:
        return np.empty(0, dtype=np.intp)
    top = np.partition(matrix, -2, axis=1)[:, -2:]
    return np.flatnonzero(top[:, 1] - top[:, 0] <= NEAR_TIE)


def _rows(features: Any, rows: np.ndarray[Any, Any]) -> Any:
    return features.iloc[rows] if hasattr(features, "iloc") else features[rows]


@dataclass(frozen=True)
class PredictionResult:
    """What a model returned for a batch, as JSON-ready Python values."""

    predictions: list[Any]
    probabilities: Sequence[dict[str, float]] | None
    """One ``{label: probability}`` per row (``ProbabilityRows`` over ``matrix``, or a list)."""
    matrix: np.ndarray[Any, Any] | None = field(default=None, compare=False)
    """The probabilities as a float64 matrix, columns in class order (for tensor outputs)."""


class Predictor:
    """Runs one immutable model version. Call only from worker threads, never the event loop."""

    def __init__(
        self,
        estimator: Any,
        schema: InputSchema,
        output: OutputSpec,
        *,
        blocks: ColumnPreprocess | None = None,
    ) -> None:
        """``blocks``: the verified numpy form of the pipeline's first step, a ColumnTransformer
        (``column_blocks.verified_blocks``), run instead of it."""
        self.estimator = estimator
        self.schema = schema
        self.output = output
        # Estimators fitted on a DataFrame remember its columns and need one; others take a
        # plain matrix, which skips pandas entirely.
        self.needs_frame = hasattr(estimator, "feature_names_in_") or any(
            f.type is FeatureType.CATEGORY for f in schema.features
        )
        self.with_proba = output.task == "classification" and hasattr(estimator, PREDICT_PROBA)
        self.names = schema.names
        self.labels = [str(label) for label in output.classes or []]
        # A pipeline's preprocessing is run once and shared by predict and predict_proba.
        self._preprocess: Any = None
        self._final: Any = estimator
        if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
            self._preprocess = estimator[:-1]
            self._final = estimator.steps[-1][1]
        # Both kinds take their labels from the probabilities; a logistic regression's near
        # ties go back to its own predict.
        self._ties_to_predict = self.with_proba and labels_follow_clear_proba(self._final)
        self.labels_from_proba = self._ties_to_predict or (
            self.with_proba and labels_are_argmax_of_proba(self._final)
        )
        self._blocks = blocks
        self._after_blocks: Any = None
        if blocks is not None and len(estimator.steps) > 2:
            self._after_blocks = estimator[1:-1]

    def _features(self, batch: ValidatedBatch) -> Any:
        """What the final estimator is given: the batch through the pipeline's preprocessing."""
        if self._blocks is not None:
            features = self._blocks.transform(batch.columns)
            if self._after_blocks is not None:
                features = self._after_blocks.transform(features)
            return features
        features = self.model_input(batch)
        if self._preprocess is not None:
            features = self._preprocess.transform(features)
        return features

    def model_input(self, batch: ValidatedBatch) -> Any:
        """The object handed to the estimator: a DataFrame or a float matrix."""
        if self.needs_frame:
            return pd.DataFrame(batch.columns, columns=self.names)
        if batch.matrix is not None:
            return batch.matrix
        return np.column_stack([batch.columns[name] for name in self.names])

    def predict(self, batch: ValidatedBatch) -> PredictionResult:
        """Predict labels (and probabilities for classifiers) for every row."""
        # Extreme (but schema-valid) inputs can overflow inside a model; rows whose output is not
        # finite are refused below rather than answered with nulls.
        # The intake's matrix is known finite: scikit-learn need not scan it again (documented
        # configuration; it changes no value, only skips the check).
        checks = config_context(assume_finite=True) if batch.matrix is not None else nullcontext()
        with (
            checks,
            np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"),
        ):
            features = self._features(batch)
            matrix = None
            if self.with_proba:
                matrix = np.asarray(getattr(self._final, PREDICT_PROBA)(features), dtype=float)
            if matrix is not None and self.labels_from_proba:
                raw = np.asarray(self._final.classes_).take(np.argmax(matrix, axis=1), axis=0)
                ties = _near_ties(matrix) if self._ties_to_predict else None
                if ties is not None and len(ties):
                    raw[ties] = getattr(self._final, PREDICT)(_rows(features, ties))
            else:
                raw = np.asarray(getattr(self._final, PREDICT)(features))
        _refuse_non_finite(raw, matrix)
        probabilities = None if matrix is None else ProbabilityRows(self.labels, matrix)
        return PredictionResult(
            predictions=raw.tolist(), probabilities=probabilities, matrix=matrix
        )


def _all_finite(values: np.ndarray[Any, Any] | None) -> bool:
    # The common case in two calls; which rows are not is worked out only when some are not.
    if values is None or values.dtype.kind != "f":
        return True
    return bool(np.isfinite(values).all())


def _refuse_non_finite(
    predictions: np.ndarray[Any, Any], probabilities: np.ndarray[Any, Any] | None
) -> None:
    if _all_finite(predictions) and _all_finite(probabilities):
        return
    bad = np.zeros(len(predictions), dtype=bool)
    if predictions.dtype.kind == "f":
        finite = np.isfinite(predictions)
        bad |= ~finite if finite.ndim == 1 else ~finite.reshape(len(finite), -1).all(axis=1)
    if probabilities is not None:
        bad |= ~np.isfinite(probabilities).all(axis=1)
    if not bad.any():
        return
    details = [
        {
            "row": row,
            "feature": None,
            "type": "non_finite_output",
            "message": "the model's output for this row is not finite; inputs are too extreme",
        }
        for row in np.flatnonzero(bad).tolist()
    ]
    raise ValidationFailed(f"{len(details)} row(s) gave a non-finite output.", details=details)
