"""LightGBM classes a pickled ``LGBMClassifier``/``LGBMRegressor`` names, and why each is
data-only. (Its ``collections.OrderedDict``/``defaultdict`` and label encoder are allowed
already.)"""

from __future__ import annotations

from modelserve.registry.formats.allowlist import AllowedGlobal

_WRAPPER = (
    "a scikit-learn estimator: rebuilt with __new__, its state (hyperparameters, the Booster, "
    "the label encoder) set by BaseEstimator.__setstate__, a dict update"
)

ALLOWED: tuple[AllowedGlobal, ...] = (
    AllowedGlobal("lightgbm.sklearn", "LGBMClassifier", False, _WRAPPER, "lightgbm"),
    AllowedGlobal("lightgbm.sklearn", "LGBMRegressor", False, _WRAPPER, "lightgbm"),
    AllowedGlobal(
        "lightgbm.basic",
        "Booster",
        False,
        "the trees: rebuilt with __new__; __setstate__ hands the pickled model text to "
        "LightGBM's own parser (LGBM_BoosterLoadModelFromString), which reads data and runs "
        "nothing. Never callable: Booster(model_file=...) would read a file of the server's, "
        "Booster(train_set=...) would train",
        "lightgbm",
    ),
)
