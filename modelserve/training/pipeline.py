"""Build, cross-validate and fit scikit-learn pipelines on the canonical model frame.

A pipeline is a ColumnTransformer (by column name) followed by one estimator, made only of
scikit-learn classes so it can be stored with skops. Cross-validation runs fold by fold so a
caller can report progress, then the model is fitted on every usable row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_float_dtype, is_integer_dtype, is_object_dtype
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
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
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelserve.core.errors import ValidationFailed
from modelserve.registry.schemas import FeatureType, InputSchema, Label, OutputSpec
from modelserve.training.schema_inference import (
    as_text,
    canonical_frame,
    check_target,
    infer_schema,
    infer_task,
)

Algorithm = Literal["linear", "logistic", "random_forest", "gradient_boosting"]
"""Which estimator to train; ``logistic`` is ``linear`` for classification only."""
Task = Literal["classification", "regression"]
"""What the model predicts."""

ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
"""Every accepted algorithm name."""
MISSING_CATEGORY = "__missing__"
"""What a missing category becomes before one-hot encoding."""
MIN_ROWS = 10
"""Fewest rows with a target value that training accepts."""
SKOPS_TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)
"""The only types skops (0.16+) may report untrusted in a pipeline built here.

skops never trusts ``numpy.dtype`` (SimpleImputer stores its fit dtype) nor tree node storage
(random forests, gradient boosting) by default. Pass these as ``trusted=`` only when loading
artifacts this server produced itself, never for uploads.
"""


@dataclass(frozen=True)
class TrainedModel:
    """A pipeline fitted on every usable row, with its schema, output and CV metrics."""

    estimator: Pipeline
    input_schema: InputSchema
    output: OutputSpec
    metrics: dict[str, Any]
    ignored_columns: dict[str, str]


def normalise_algorithm(
    algorithm: str, task: Task
) -> Literal["linear", "random_forest", "gradient_boosting"]:
    """The canonical algorithm name; ValidationFailed for unknown names and for ``logistic``
    with a regression task."""
    if algorithm not in ALGORITHMS:
        raise ValidationFailed(
            f"Unknown algorithm {algorithm!r}.",
            details={"algorithm": algorithm, "allowed": list(ALGORITHMS)},
        )
    if algorithm == "logistic":
        if task != "classification":
            raise ValidationFailed(
                "The 'logistic' algorithm is for classification only; use 'linear' for regression.",
                details={"algorithm": algorithm, "task": task},
            )
        return "linear"
    if algorithm == "linear":
        return "linear"
    return "random_forest" if algorithm == "random_forest" else "gradient_boosting"


def build_pipeline(
    schema: InputSchema, task: Task, algorithm: Algorithm, random_state: int = 0
) -> Pipeline:
    """An unfitted pipeline for canonical frames of ``schema``.

    Numeric features: median imputation (and standard scaling for linear models). Booleans:
    most-frequent imputation. Categories: missing (None or NaN) becomes ``__missing__``, then
    one-hot encoding over the schema's categories, ignoring unknown values.
    """
    name = normalise_algorithm(algorithm, task)
    numeric = [
        f.name for f in schema.features if f.type in (FeatureType.NUMBER, FeatureType.INTEGER)
    ]
    boolean = [f.name for f in schema.features if f.type is FeatureType.BOOLEAN]
    categorical = [f for f in schema.features if f.type is FeatureType.CATEGORY]
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps: list[tuple[str, Any]] = [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True))
        ]
        if name == "linear":
            steps.append(("scale", StandardScaler()))
        transformers.append(("numeric", Pipeline(steps), numeric))
    if boolean:
        imputer = SimpleImputer(strategy="most_frequent", keep_empty_features=True)
        transformers.append(("boolean", imputer, boolean))
    if categorical:
        categories = []
        for spec in categorical:
            values = list(spec.categories or [])
            if spec.nullable and MISSING_CATEGORY not in values:
                values.append(MISSING_CATEGORY)
            categories.append(values)
        encode = Pipeline(
            [
                # Serving frames may hold NaN (pandas str dtype) where canonical frames hold
                # None, so both are filled.
                ("impute_nan", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
                (
                    "impute_none",
                    SimpleImputer(
                        missing_values=None, strategy="constant", fill_value=MISSING_CATEGORY
                    ),
                ),
                (
                    "onehot",
                    OneHotEncoder(
                        categories=categories, handle_unknown="ignore", sparse_output=False
                    ),
                ),
            ]
        )
        transformers.append(("category", encode, [f.name for f in categorical]))
    preprocess = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", preprocess), ("model", _estimator(task, name, random_state))])


def train(
    df: pd.DataFrame,
    target: str,
    *,
    algorithm: Algorithm = "gradient_boosting",
    task: Task | None = None,
    folds: int = 5,
    random_state: int = 0,
    on_fold: Callable[[int, int], None] | None = None,
) -> TrainedModel:
    """Infer the schema, cross-validate fold by fold (calling ``on_fold(i, k)`` after fold
    ``i`` of ``k``), then fit on every row whose target is present.

    Raises ValidationFailed for data that cannot be trained on: no rows, a missing target
    column, fewer than 10 rows with a target, a single class or a class with one row, a
    non-numeric regression target, an unknown algorithm or ``logistic`` for regression.
    """
    if algorithm not in ALGORITHMS:
        normalise_algorithm(algorithm, "classification")
    if folds < 2:
        raise ValidationFailed("At least 2 folds are needed.", details={"folds": folds})
    if len(df) == 0:
        raise ValidationFailed("The data has no rows.")
    check_target(df, target)
    raw_target = df[target]
    keep = raw_target.notna().to_numpy()
    dropped = int((~keep).sum())
    data = df.loc[keep].reset_index(drop=True)
    n_rows = len(data)
    if n_rows < MIN_ROWS:
        raise ValidationFailed(
            f"At least {MIN_ROWS} rows with a target value are needed; got {n_rows}.",
            details={"rows": n_rows, "dropped_rows": dropped, "minimum": MIN_ROWS},
        )
    y_series = _target_series(data[target], read_as_float=dropped > 0)
    task = task or infer_task(y_series)
    algo = normalise_algorithm(algorithm, task)
    inference = infer_schema(data, target)
    schema = inference.schema
    x = canonical_frame(data, schema)
    y = _checked_target(y_series, task, target)
    pipeline = build_pipeline(schema, task, algo, random_state)

    classes: list[Any] = []
    if task == "classification":
        classes = np.unique(y).tolist()
        counts = pd.Series(y).value_counts()
        k = min(folds, int(counts.min()))
        splitter: StratifiedKFold | KFold = StratifiedKFold(
            n_splits=k, shuffle=True, random_state=random_state
        )
    else:
        k = min(folds, n_rows // 2)
        splitter = KFold(n_splits=k, shuffle=True, random_state=random_state)

    per_fold: dict[str, list[float]] = {}
    for i, (train_idx, test_idx) in enumerate(splitter.split(x, y), start=1):
        model = clone(pipeline).fit(x.iloc[train_idx], y[train_idx])
        scores = _fold_scores(model, x.iloc[test_idx], y[test_idx], task, classes)
        for metric, value in scores.items():
            per_fold.setdefault(metric, []).append(value)
        if on_fold is not None:
            on_fold(i, k)

    estimator = clone(pipeline).fit(x, y)
    metrics: dict[str, Any] = {
        "task": task,
        "algorithm": algo,
        "target": target,
        "cv_folds": k,
        "n_rows": n_rows,
        "n_features": len(schema.features),
        "dropped_rows": dropped,
    }
    for metric, values in per_fold.items():
        metrics[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    if task == "classification":
        output = OutputSpec(
            task=task,
            classes=[_label(c) for c in np.asarray(estimator.classes_).tolist()],
            probabilities=True,
        )
    else:
        output = OutputSpec(task=task, classes=None, probabilities=False)
    return TrainedModel(
        estimator=estimator,
        input_schema=schema,
        output=output,
        metrics=metrics,
        ignored_columns=dict(inference.ignored),
    )


def _estimator(
    task: Task, algorithm: Literal["linear", "random_forest", "gradient_boosting"], seed: int
) -> Any:
    if task == "classification":
        if algorithm == "linear":
            return LogisticRegression(max_iter=1000)
        if algorithm == "random_forest":
            return RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=seed)
        return HistGradientBoostingClassifier(random_state=seed)
    if algorithm == "linear":
        return Ridge()
    if algorithm == "random_forest":
        return RandomForestRegressor(n_estimators=100, n_jobs=1, random_state=seed)
    return HistGradientBoostingRegressor(random_state=seed)


def _target_series(col: pd.Series[Any], *, read_as_float: bool) -> pd.Series[Any]:
    """The present target values with a clean dtype: bool, int64, float64 or object of str.

    A float column of whole numbers becomes int64 when it had missing values (that is how
    pandas reads an integer column with gaps), so a 0/1 label with gaps stays a class label.
    """
    dtype = col.dtype
    if is_bool_dtype(dtype):
        return col.astype(bool)
    if is_integer_dtype(dtype):
        return col.astype(np.int64)
    if is_float_dtype(dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        whole = np.isfinite(values).all() and bool((values == np.round(values)).all())
        if read_as_float and whole and bool((np.abs(values) < 2**53).all()):
            return pd.Series(values.astype(np.int64), index=col.index)
        return pd.Series(values, index=col.index)
    values_list = col.tolist()
    if is_object_dtype(dtype):
        if all(isinstance(v, bool | np.bool_) for v in values_list):
            return pd.Series([bool(v) for v in values_list], index=col.index, dtype=bool)
        if all(isinstance(v, int | np.integer) for v in values_list):
            return pd.Series([int(v) for v in values_list], index=col.index, dtype=np.int64)
    return pd.Series([as_text(v) for v in values_list], index=col.index, dtype=object)


def _checked_target(y: pd.Series[Any], task: Task, target: str) -> np.ndarray[Any, Any]:
    """The target as an array, checked for the task."""
    if task == "regression":
        numeric = is_integer_dtype(y.dtype) or is_float_dtype(y.dtype)
        if not numeric or is_bool_dtype(y.dtype):
            raise ValidationFailed(
                f"Regression needs a numeric target; {target!r} is not numeric.",
                details={"target": target, "examples": [str(v) for v in y.head(5).tolist()]},
            )
        values = y.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValidationFailed(
                f"The target {target!r} has infinite values.", details={"target": target}
            )
        return values
    counts = y.value_counts()
    if len(counts) < 2:
        raise ValidationFailed(
            f"The target {target!r} has a single class; classification needs at least two.",
            details={"target": target, "classes": [_label(c) for c in counts.index.tolist()]},
        )
    rare = [_label(c) for c, n in counts.items() if n < 2]
    if rare:
        raise ValidationFailed(
            f"Every class needs at least 2 rows; {len(rare)} class(es) of {target!r} have one.",
            details={"target": target, "classes_with_one_row": rare[:50]},
        )
    return y.to_numpy()


def _fold_scores(
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
    return scores


def _aligned_proba(model: Pipeline, x: pd.DataFrame, classes: list[Any]) -> np.ndarray[Any, Any]:
    """Class probabilities with one column per class in ``classes``, even for classes the
    fold's model never saw."""
    proba = np.asarray(model.predict_proba(x), dtype=np.float64)
    fitted = np.asarray(model.classes_).tolist()
    if fitted == classes:
        return proba
    aligned = np.zeros((proba.shape[0], len(classes)), dtype=np.float64)
    for column, label in enumerate(fitted):
        aligned[:, classes.index(label)] = proba[:, column]
    return aligned


def _label(value: Any) -> Label:
    """A class label as a JSON-able Python value."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | bool | int | float):
        return value
    return str(value)
