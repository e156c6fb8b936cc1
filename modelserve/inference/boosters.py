"""XGBoost and LightGBM ``Booster`` objects (loaded from their own model files) behind the
``Predictor`` contract: the validated columns as one float matrix in schema order, the booster's
raw prediction mapped to labels and probabilities (or regression values)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from modelserve.inference.predictor import PredictionResult, Predictor, _refuse_non_finite
from modelserve.inference.validation import ValidatedBatch
from modelserve.registry.schemas import InputSchema, OutputSpec

_XGB_PROBABILITY = ("binary:logistic", "multi:softprob")
_XGB_LABELS = ("binary:hinge", "multi:softmax")
_LGB_BINARY = ("binary", "cross_entropy", "xentropy")
_LGB_MULTI = ("multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr")


def is_xgboost_booster(obj: Any) -> bool:
    """Whether ``obj`` is an ``xgboost.Booster`` (without importing XGBoost)."""
    return type(obj).__module__ == "xgboost.core" and type(obj).__name__ == "Booster"


def is_lightgbm_booster(obj: Any) -> bool:
    """Whether ``obj`` is a ``lightgbm.Booster`` (without importing LightGBM)."""
    return type(obj).__module__ == "lightgbm.basic" and type(obj).__name__ == "Booster"


def xgboost_output(booster: Any) -> OutputSpec:
    """What an XGBoost Booster predicts, from its objective."""
    learner = json.loads(booster.save_config())["learner"]
    objective = str(learner["objective"]["name"])
    classes = int(learner["learner_model_param"].get("num_class", "0") or 0)
    if objective.startswith("binary:") and objective != "binary:logitraw":
        return OutputSpec(
            task="classification", classes=[0, 1], probabilities=objective in _XGB_PROBABILITY
        )
    if objective in ("multi:softprob", "multi:softmax"):
        return OutputSpec(
            task="classification",
            classes=list(range(classes)),
            probabilities=objective in _XGB_PROBABILITY,
        )
    return OutputSpec(task="regression")


def lightgbm_output(booster: Any) -> OutputSpec:
    """What a LightGBM Booster predicts, from its objective."""
    objective = str(booster.params.get("objective", "regression")).split()[0]
    if objective in _LGB_BINARY:
        return OutputSpec(task="classification", classes=[0, 1], probabilities=True)
    if objective in _LGB_MULTI:
        count = int(booster.num_model_per_iteration())
        return OutputSpec(task="classification", classes=list(range(count)), probabilities=True)
    return OutputSpec(task="regression")


class BoosterPredictor(Predictor):
    """An XGBoost or LightGBM Booster: ``inplace_predict`` / ``predict`` on a float matrix."""

    def __init__(
        self, booster: Any, schema: InputSchema, output: OutputSpec, *, missing: Any = np.nan
    ) -> None:
        """``missing``: the value XGBoost treats as missing (a wrapper's ``missing``)."""
        super().__init__(booster, schema, output)
        self._missing = missing
        self.needs_frame = False
        self.with_proba = output.task == "classification" and output.probabilities
        self._xgboost = is_xgboost_booster(booster)
        self._classes = np.asarray(output.classes or [])

    def model_input(self, batch: ValidatedBatch) -> Any:
        """The float matrix in schema order."""
        return np.column_stack([batch.columns[name] for name in self.names]).astype(
            np.float64, copy=False
        )

    def _raw(self, matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if self._xgboost:
            # validate_features off: the schema, not column names, orders the matrix.
            return np.asarray(
                self.estimator.inplace_predict(
                    matrix, validate_features=False, missing=self._missing
                )
            )
        return np.asarray(self.estimator.predict(matrix))

    def predict(self, batch: ValidatedBatch) -> PredictionResult:
        """Labels and probabilities (classifiers) or values (regression) for every row."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            raw = self._raw(self.model_input(batch))
        matrix = None
        if self.output.task == "regression":
            values = raw.astype(np.float64, copy=False).reshape(len(raw), -1)
            predictions = values.ravel() if values.shape[1] == 1 else values
        elif self.with_proba:
            # 1 - p in the library's own precision, as its predict_proba computes it.
            both = np.column_stack([1 - raw, raw]) if raw.ndim == 1 else raw
            matrix = both.astype(np.float64, copy=False)
            predictions = self._classes.take(np.argmax(matrix, axis=1))
        else:
            predictions = self._classes.take(np.rint(raw.ravel()).astype(np.intp))
        _refuse_non_finite(np.asarray(predictions), matrix)
        probabilities = None
        if matrix is not None:
            probabilities = [dict(zip(self.labels, row, strict=True)) for row in matrix.tolist()]
        return PredictionResult(predictions=predictions.tolist(), probabilities=probabilities)
