"""The estimators training can build: names, optional libraries, hyperparameters and the spaces
a randomized search draws from.

XGBoost and LightGBM are optional extras (``modelserve[xgboost]``, ``modelserve[lightgbm]``):
they are imported only when asked for, and a missing one is a clear error, not an ImportError.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Literal, get_args

from scipy.stats import loguniform, randint, uniform
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge

from modelserve.core.errors import ValidationFailed

Algorithm = Literal[
    "linear", "logistic", "random_forest", "gradient_boosting", "xgboost", "lightgbm"
]
"""Which estimator to train: ``linear`` (ridge) for regression, ``logistic`` for
classification; the others for both."""
Task = Literal["classification", "regression"]
"""What the model predicts."""

ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
"""Every accepted algorithm name."""
DEFAULT_ALGORITHM: Algorithm = "random_forest"
"""The default: on scikit-learn's small bundled data sets it is never far from the best
(see the README's training section for the measurements)."""
OPTIONAL: dict[str, tuple[str, str]] = {
    "xgboost": ("xgboost", "xgboost"),
    "lightgbm": ("lightgbm", "lightgbm"),
}
"""Algorithm -> (module, pip extra) for the estimators of optional libraries."""
ParamValue = int | float | bool | str | None
"""A hyperparameter value as ``--param`` parses it."""


def available_algorithms() -> list[str]:
    """The algorithm names this installation can train."""
    return [a for a in ALGORITHMS if a not in OPTIONAL or _installed(OPTIONAL[a][0])]


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_algorithm(algorithm: str, task: Task) -> Algorithm:
    """``algorithm`` if it can train ``task`` here; ValidationFailed naming the fix otherwise."""
    if algorithm not in ALGORITHMS:
        raise ValidationFailed(
            f"Unknown algorithm {algorithm!r}.",
            details={"algorithm": algorithm, "allowed": available_algorithms()},
        )
    if algorithm == "logistic" and task != "classification":
        raise ValidationFailed(
            "The 'logistic' algorithm is for classification only; use 'linear' for regression.",
            details={"algorithm": algorithm, "task": task},
        )
    if algorithm == "linear" and task == "classification":
        raise ValidationFailed(
            "The target is a classification target: use 'logistic' (logistic regression), "
            "'linear' is ridge regression for numeric targets. Pass --task regression to "
            "predict it as a number instead.",
            details={"algorithm": algorithm, "task": task, "use": "logistic"},
        )
    if algorithm in OPTIONAL and not _installed(OPTIONAL[algorithm][0]):
        extra = OPTIONAL[algorithm][1]
        raise ValidationFailed(
            f"The {algorithm!r} algorithm needs the {extra} package: "
            f"pip install 'modelserve[{extra}]'.",
            details={"algorithm": algorithm, "available": available_algorithms()},
        )
    return algorithm  # type: ignore[return-value]


def make_estimator(
    algorithm: Algorithm, task: Task, seed: int, params: dict[str, ParamValue] | None = None
) -> Any:
    """A fresh, unfitted estimator with ``params`` set; ValidationFailed for a parameter the
    estimator does not have (listing those it has) or a value it refuses."""
    estimator = _base_estimator(algorithm, task, seed)
    if not params:
        return estimator
    valid = sorted(estimator.get_params(deep=False))
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValidationFailed(
            f"Unknown parameter(s) for {algorithm}: {', '.join(unknown)}.",
            details={"unknown": unknown, "valid": valid},
        )
    estimator.set_params(**params)
    return estimator


def _base_estimator(algorithm: Algorithm, task: Task, seed: int) -> Any:
    classify = task == "classification"
    if algorithm in ("linear", "logistic"):
        return LogisticRegression(max_iter=1000) if classify else Ridge()
    if algorithm == "random_forest":
        forest = RandomForestClassifier if classify else RandomForestRegressor
        return forest(n_estimators=100, n_jobs=1, random_state=seed)
    if algorithm == "gradient_boosting":
        boosting = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        return boosting(random_state=seed)
    module = importlib.import_module(OPTIONAL[algorithm][0])
    if algorithm == "xgboost":
        kind = "XGBClassifier" if classify else "XGBRegressor"
        return getattr(module, kind)(n_estimators=100, n_jobs=1, random_state=seed)
    kind = "LGBMClassifier" if classify else "LGBMRegressor"
    # verbose=-1: LightGBM otherwise prints a line per fit ("no further splits...").
    return getattr(module, kind)(n_estimators=100, n_jobs=1, random_state=seed, verbose=-1)


def search_space(algorithm: Algorithm, task: Task) -> dict[str, Any]:
    """The distributions a randomized search samples for ``algorithm``."""
    if algorithm in ("linear", "logistic"):
        return (
            {"C": loguniform(1e-3, 1e2)}
            if task == "classification"
            else {"alpha": loguniform(1e-3, 1e2)}
        )
    if algorithm == "random_forest":
        return {
            "n_estimators": randint(50, 400),
            "max_depth": [None, 4, 6, 8, 12],
            "min_samples_leaf": randint(1, 10),
            "max_features": ["sqrt", "log2", 0.5, 1.0],
        }
    if algorithm == "gradient_boosting":
        return {
            "learning_rate": loguniform(0.01, 0.3),
            "max_leaf_nodes": randint(4, 64),
            "min_samples_leaf": randint(2, 40),
            "l2_regularization": loguniform(1e-4, 10.0),
            "max_iter": randint(50, 400),
        }
    space: dict[str, Any] = {
        "n_estimators": randint(50, 400),
        "learning_rate": loguniform(0.01, 0.3),
        "subsample": uniform(0.5, 0.5),
        "colsample_bytree": uniform(0.5, 0.5),
        "reg_lambda": loguniform(1e-3, 10.0),
    }
    if algorithm == "xgboost":
        space |= {"max_depth": randint(2, 8), "min_child_weight": loguniform(0.5, 10.0)}
    else:
        space |= {"num_leaves": randint(4, 64), "min_child_samples": randint(2, 30)}
        space["subsample_freq"] = [1]  # LightGBM ignores subsample unless bagging is on
    return space


def parse_param(text: str) -> tuple[str, ParamValue]:
    """``name=value`` with the value typed: integer, float, true/false, none/null, else text."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ValidationFailed(
            f"A parameter is written name=value; got {text!r}.", details={"param": text}
        )
    return name, _typed(raw.strip())


def _typed(raw: str) -> ParamValue:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            continue
    return raw


def parse_params(texts: list[str]) -> dict[str, ParamValue]:
    """Several ``name=value`` texts; a name given twice is an error."""
    params: dict[str, ParamValue] = {}
    for text in texts:
        name, value = parse_param(text)
        if name in params:
            raise ValidationFailed(f"Parameter {name!r} is given twice.", details={"param": name})
        params[name] = value
    return params
