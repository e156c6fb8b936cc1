"""Held-out metrics of one cross-validation fold, and which one ranks search candidates."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.pipeline import Pipeline

from modelserve.training.estimators import Task

LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
"""Metrics where a smaller value is a better model."""


def ranking_metric(task: Task, n_classes: int) -> str:
    """What a search ranks candidates by: ROC AUC for two classes, log loss for more (both
    judge the probabilities, not only the labels), R² for regression."""
    if task == "regression":
        return "r2"
    return "roc_auc" if n_classes == 2 else "log_loss"


def fold_scores(
    model: Pipeline, x: pd.DataFrame, y: np.ndarray[Any, Any], task: Task, classes: list[Any]
) -> dict[str, float]:
    """One fold's held-out metrics."""
    predicted = model.predict(x)
    if task == "regression":
        return {
            "r2": float(r2_score(y, predicted)),
            "rmse": float(root_mean_squared_error(y, predicted)),
            "mae": float(mean_absolute_error(y, predicted)),
        }
    proba = _aligned_proba(model, x, classes)
    scores = {
        "accuracy": float(accuracy_score(y, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
        "f1_macro": float(f1_score(y, predicted, labels=classes, average="macro", zero_division=0)),
        "log_loss": float(log_loss(y, proba, labels=classes)),
    }
    if len(classes) == 2:
        scores["roc_auc"] = float(roc_auc_score(y == classes[1], proba[:, 1]))
    else:
        with suppress(ValueError):  # a class absent from this fold's held-out rows
            scores["roc_auc_ovr"] = float(
                roc_auc_score(y, proba, labels=classes, multi_class="ovr", average="macro")
            )
    return scores


def _aligned_proba(model: Pipeline, x: pd.DataFrame, classes: list[Any]) -> np.ndarray[Any, Any]:
    """Class probabilities with one column per class in ``classes``, even for classes the
    fold's model never saw."""
    proba = np.asarray(model.predict_proba(x), dtype=np.float64)
    # XGBoost answers float32: rows that sum to 1 only within float32 rounding.
    proba /= proba.sum(axis=1, keepdims=True)
    fitted = np.asarray(model.classes_).tolist()
    if fitted == classes:
        return proba
    aligned = np.zeros((proba.shape[0], len(classes)), dtype=np.float64)
    for column, label in enumerate(fitted):
        aligned[:, classes.index(label)] = proba[:, column]
    return aligned
