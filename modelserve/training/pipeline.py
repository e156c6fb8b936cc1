"""Build, cross-validate and fit pipelines on the canonical model frame.

A pipeline is a ColumnTransformer (by column name) followed by one estimator (scikit-learn's,
or XGBoost's and LightGBM's scikit-learn classes when installed). Cross-validation runs fold by
fold so a caller can report progress; a randomized search runs the same folds for each
candidate. Then the (best) model is fitted on every usable row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, ParameterSampler, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelserve.core.errors import ValidationFailed
from modelserve.registry.schemas import FeatureType, InputSchema, OutputSpec
from modelserve.training.estimators import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    Algorithm,
    ParamValue,
    Task,
    check_algorithm,
    make_estimator,
    search_space,
)
from modelserve.training.metrics import LOWER_IS_BETTER, fold_scores, ranking_metric
from modelserve.training.overrides import apply_overrides, select_columns
from modelserve.training.schema_inference import (
    canonical_frame,
    check_target,
    infer_schema,
    infer_task,
    with_profile,
)
from modelserve.training.target import checked_target, label, target_series

__all__ = ["ALGORITHMS", "Algorithm", "Candidate", "Task", "TrainedModel", "train"]

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
class Candidate:
    """One set of hyperparameters a search tried, with its cross-validated metrics."""

    params: dict[str, ParamValue]
    score: float
    """Mean of the ranking metric over the folds."""
    std: float
    folds: dict[str, list[float]] = field(repr=False)


@dataclass(frozen=True)
class TrainedModel:
    """A pipeline fitted on every usable row, with its schema, output and CV metrics."""

    estimator: Pipeline
    input_schema: InputSchema
    output: OutputSpec
    metrics: dict[str, Any]
    ignored_columns: dict[str, str]
    search: list[Candidate] = field(default_factory=list)
    """What a randomized search tried, best first (empty without a search)."""


@dataclass(frozen=True)
class _Folds:
    """The cross-validation every candidate of one training run shares."""

    x: pd.DataFrame
    y: np.ndarray[Any, Any]
    task: Task
    classes: list[Any]
    splits: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]


def build_pipeline(
    schema: InputSchema,
    task: Task,
    algorithm: Algorithm,
    random_state: int = 0,
    params: dict[str, ParamValue] | None = None,
) -> Pipeline:
    """An unfitted pipeline for canonical frames of ``schema``.

    Numeric features: median imputation (and standard scaling for linear models). Booleans:
    most-frequent imputation. Categories: missing (None or NaN) becomes ``__missing__``, then
    one-hot encoding over the schema's categories, ignoring unknown values.
    """
    estimator = make_estimator(check_algorithm(algorithm, task), task, random_state, params)
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
        if algorithm in ("linear", "logistic"):
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
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


def train(
    df: pd.DataFrame,
    target: str,
    *,
    algorithm: Algorithm = DEFAULT_ALGORITHM,
    task: Task | None = None,
    folds: int = 5,
    random_state: int = 0,
    features: list[str] | None = None,
    drop: list[str] | None = None,
    params: dict[str, ParamValue] | None = None,
    search: int = 0,
    overrides: Any = None,
    on_fold: Callable[[int, int], None] | None = None,
    on_candidate: Callable[[int, int], None] | None = None,
) -> TrainedModel:
    """Select columns, infer the schema (merged with the user's ``overrides`` schema document,
    then profiled: ranges and frequencies), cross-validate fold by fold (calling
    ``on_fold(i, k)`` after fold ``i`` of ``k``), or, with ``search`` > 0, cross-validate that
    many randomly drawn hyperparameter sets (``on_candidate(i, n)`` after each) and keep the
    best; then fit on every row whose target is present. ``params`` are fixed hyperparameters
    (never searched).

    Raises ValidationFailed for data that cannot be trained on: no rows, a missing target
    column, fewer than 10 rows with a target, a single class or a class with one row, a
    non-numeric regression target, an unknown or unavailable algorithm, ``logistic`` for
    regression or ``linear`` for classification, unknown columns or parameters.
    """
    if algorithm not in ALGORITHMS:
        check_algorithm(algorithm, "classification")
    if folds < 2:
        raise ValidationFailed("At least 2 folds are needed.", details={"folds": folds})
    if search < 0:
        raise ValidationFailed("The search size cannot be negative.", details={"search": search})
    if len(df) == 0:
        raise ValidationFailed("The data has no rows.")
    check_target(df, target)
    df = select_columns(df, target, features, drop)
    keep = df[target].notna().to_numpy()
    dropped = int((~keep).sum())
    data = df.loc[keep].reset_index(drop=True)
    n_rows = len(data)
    if n_rows < MIN_ROWS:
        raise ValidationFailed(
            f"At least {MIN_ROWS} rows with a target value are needed; got {n_rows}.",
            details={"rows": n_rows, "dropped_rows": dropped, "minimum": MIN_ROWS},
        )
    y_series = target_series(data[target], read_as_float=dropped > 0)
    task = task or infer_task(y_series)
    algo = check_algorithm(algorithm, task)
    inference = infer_schema(data, target)
    _check_selected(features, inference.ignored)
    schema = inference.schema
    if overrides is not None:
        schema = apply_overrides(schema, overrides)
    x = canonical_frame(data, schema)
    schema = with_profile(schema, x)
    y = checked_target(y_series, task, target)
    if algo == "xgboost" and task == "classification":
        _check_xgboost_labels(y, target)
    cv = _folds(x, y, task, folds=folds, n_rows=n_rows, seed=random_state)
    fixed = dict(params or {})
    candidates: list[Candidate] = []
    if search:
        candidates = _search(
            cv, schema, algo, fixed=fixed, n=search, seed=random_state, on_candidate=on_candidate
        )
        chosen = {**fixed, **candidates[0].params}
        per_fold = candidates[0].folds
    else:
        chosen = fixed
        pipeline = build_pipeline(schema, task, algo, random_state, chosen)
        per_fold = _cross_validate(pipeline, cv, on_fold)
    estimator = _fit(build_pipeline(schema, task, algo, random_state, chosen), x, y)
    metrics: dict[str, Any] = {
        "task": task,
        "algorithm": algo,
        "target": target,
        "cv_folds": len(cv.splits),
        "n_rows": n_rows,
        "n_features": len(schema.features),
        "dropped_rows": dropped,
    }
    if chosen:
        metrics["params"] = chosen
    if search:
        metrics["search"] = {
            "candidates": len(candidates),
            "ranked_by": ranking_metric(task, len(cv.classes)),
        }
    for metric, values in per_fold.items():
        metrics[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    return TrainedModel(
        estimator=estimator,
        input_schema=schema,
        output=_output(estimator, task),
        metrics=metrics,
        ignored_columns=dict(inference.ignored),
        search=candidates,
    )


def _output(estimator: Pipeline, task: Task) -> OutputSpec:
    if task == "classification":
        return OutputSpec(
            task=task,
            classes=[label(c) for c in np.asarray(estimator.classes_).tolist()],
            probabilities=True,
        )
    return OutputSpec(task=task, classes=None, probabilities=False)


def _check_selected(features: list[str] | None, ignored: dict[str, str]) -> None:
    """A column the user asked for by name that inference could not use is an error."""
    refused = {name: ignored[name] for name in features or () if name in ignored}
    if refused:
        raise ValidationFailed(
            f"{len(refused)} selected column(s) cannot be used as features.",
            details={"columns": refused},
        )


def _check_xgboost_labels(y: np.ndarray[Any, Any], target: str) -> None:
    classes = np.unique(y).tolist()
    if classes != list(range(len(classes))) and classes != [False, True]:
        raise ValidationFailed(
            f"XGBoost classifiers need the classes of {target!r} to be 0, 1, ..., n-1; "
            "recode the labels or use 'lightgbm' or 'gradient_boosting'.",
            details={"target": target, "classes": [label(c) for c in classes[:20]]},
        )


def _folds(
    x: pd.DataFrame, y: np.ndarray[Any, Any], task: Task, *, folds: int, n_rows: int, seed: int
) -> _Folds:
    classes: list[Any] = []
    splitter: StratifiedKFold | KFold
    if task == "classification":
        classes = np.unique(y).tolist()
        k = min(folds, int(pd.Series(y).value_counts().min()))
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=min(folds, n_rows // 2), shuffle=True, random_state=seed)
    return _Folds(x, y, task, classes, list(splitter.split(x, y)))


def _cross_validate(
    pipeline: Pipeline, cv: _Folds, on_fold: Callable[[int, int], None] | None = None
) -> dict[str, list[float]]:
    """Each metric's held-out value, fold by fold."""
    per_fold: dict[str, list[float]] = {}
    for i, (train_idx, test_idx) in enumerate(cv.splits, start=1):
        model = _fit(clone(pipeline), cv.x.iloc[train_idx], cv.y[train_idx])
        scores = fold_scores(model, cv.x.iloc[test_idx], cv.y[test_idx], cv.task, cv.classes)
        for metric, value in scores.items():
            per_fold.setdefault(metric, []).append(value)
        if on_fold is not None:
            on_fold(i, len(cv.splits))
    return per_fold


def _search(
    cv: _Folds,
    schema: InputSchema,
    algorithm: Algorithm,
    *,
    fixed: dict[str, ParamValue],
    n: int,
    seed: int,
    on_candidate: Callable[[int, int], None] | None,
) -> list[Candidate]:
    """``n`` hyperparameter sets drawn from the algorithm's space (fixed ones left out), each
    cross-validated on the same folds; best first."""
    space = {k: v for k, v in search_space(algorithm, cv.task).items() if k not in fixed}
    if not space:
        raise ValidationFailed(
            "Every searched parameter is fixed with --param; nothing is left to search.",
            details={"fixed": sorted(fixed)},
        )
    metric = ranking_metric(cv.task, len(cv.classes))
    candidates = []
    for i, drawn in enumerate(ParameterSampler(space, n_iter=n, random_state=seed), start=1):
        sampled = {k: _plain(v) for k, v in drawn.items()}
        pipeline = build_pipeline(schema, cv.task, algorithm, seed, {**fixed, **sampled})
        per_fold = _cross_validate(pipeline, cv)
        values = per_fold[metric]
        candidates.append(
            Candidate(sampled, float(np.mean(values)), float(np.std(values)), per_fold)
        )
        if on_candidate is not None:
            on_candidate(i, n)
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    return sorted(candidates, key=lambda c: sign * c.score)


def _plain(value: Any) -> ParamValue:
    """A sampled value as a plain Python (JSON-able) value."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return round(value, 6)
    return value  # type: ignore[no-any-return]


def _fit(model: Pipeline, x: pd.DataFrame, y: np.ndarray[Any, Any]) -> Pipeline:
    """Fit, turning the estimator's refusal of a hyperparameter value into ValidationFailed."""
    try:
        return model.fit(x, y)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed(
            f"The model could not be trained: {exc}",
            details={"error": f"{type(exc).__name__}: {exc}"},
        ) from exc
