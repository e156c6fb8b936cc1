"""Real XGBoost and LightGBM models (20 trees, breast cancer), trained once per session."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from format_models import cancer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

xgboost = pytest.importorskip("xgboost")
lightgbm = pytest.importorskip("lightgbm")


@pytest.fixture(scope="session")
def data() -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    return cancer()


@pytest.fixture(scope="session")
def fitted(data: tuple[pd.DataFrame, np.ndarray[Any, Any]]) -> dict[str, Any]:
    """Classifiers and regressors of both libraries, alone and as a pipeline's last step."""
    frame, target = data
    made: dict[str, Any] = {
        "xgboost": xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=0),
        "lightgbm": lightgbm.LGBMClassifier(n_estimators=20, verbose=-1, random_state=0),
        "xgboost-regressor": xgboost.XGBRegressor(n_estimators=20, max_depth=3),
        "lightgbm-regressor": lightgbm.LGBMRegressor(n_estimators=20, verbose=-1),
    }
    for name in ("xgboost", "lightgbm"):
        final = made[name].__class__(**made[name].get_params())
        made[f"{name}-pipeline"] = Pipeline([("scale", StandardScaler()), ("model", final)])
    for name, model in made.items():
        y = frame["mean_radius"].to_numpy() if name.endswith("regressor") else target
        model.fit(frame, y)
    return made
