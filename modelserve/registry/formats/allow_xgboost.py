"""XGBoost classes a pickled ``XGBClassifier``/``XGBRegressor`` names, and why each is data-only."""

from __future__ import annotations

from modelserve.registry.formats.allowlist import AllowedGlobal

_WRAPPER = (
    "a scikit-learn estimator: rebuilt with __new__, its state (hyperparameters, the Booster) "
    "set by BaseEstimator.__setstate__, a dict update"
)

ALLOWED: tuple[AllowedGlobal, ...] = (
    AllowedGlobal("xgboost.sklearn", "XGBClassifier", False, _WRAPPER, "xgboost"),
    AllowedGlobal("xgboost.sklearn", "XGBRegressor", False, _WRAPPER, "xgboost"),
    AllowedGlobal("xgboost.sklearn", "XGBRFClassifier", False, _WRAPPER, "xgboost"),
    AllowedGlobal("xgboost.sklearn", "XGBRFRegressor", False, _WRAPPER, "xgboost"),
    AllowedGlobal(
        "xgboost.core",
        "Booster",
        False,
        "the trees: rebuilt with __new__; __setstate__ hands the pickled bytes to XGBoost's own "
        "model parser (XGBoosterUnserializeFromBuffer), which reads data and runs nothing. Never "
        "callable: Booster(model_file=...) would read a file of the server's",
        "xgboost",
    ),
)
