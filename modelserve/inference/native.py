"""Which predictor serves a loaded model, and what it outputs, for every format: XGBoost and
LightGBM Boosters and ONNX files get their own predictors; everything else (scikit-learn
estimators and pipelines, XGBoost/LightGBM's scikit-learn wrappers) the ``Predictor``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from modelserve.inference.boosters import (
    BoosterPredictor,
    is_lightgbm_booster,
    is_xgboost_booster,
    lightgbm_output,
    xgboost_output,
)
from modelserve.inference.predictor import Predictor
from modelserve.registry.formats.onnx_file import OnnxFile
from modelserve.registry.schemas import InputSchema, OutputSpec

if TYPE_CHECKING:
    from modelserve.inference.column_blocks import ColumnBlocks


def native_output(model: Any) -> OutputSpec | None:
    """What a Booster or ONNX file outputs, read from it; None for other models."""
    if is_xgboost_booster(model):
        return xgboost_output(model)
    if is_lightgbm_booster(model):
        return lightgbm_output(model)
    if isinstance(model, OnnxFile):
        from modelserve.inference.onnx_file_predictor import onnx_output

        return onnx_output(model)
    return None


def make_predictor(
    model: Any, schema: InputSchema, output: OutputSpec, *, blocks: ColumnBlocks | None = None
) -> Predictor:
    """The predictor for a loaded model of any format."""
    if is_xgboost_booster(model) or is_lightgbm_booster(model):
        return BoosterPredictor(model, schema, output)
    if isinstance(model, OnnxFile):
        from modelserve.inference.onnx_file_predictor import OnnxFilePredictor

        return OnnxFilePredictor(model, schema, output)
    booster = wrapped_booster(model, schema)
    if booster is not None:
        missing = getattr(model, "missing", np.nan)
        return BoosterPredictor(booster, schema, output, missing=missing)
    return Predictor(model, schema, output, blocks=blocks)


_WRAPPERS = {
    ("xgboost.sklearn", "XGBClassifier"),
    ("xgboost.sklearn", "XGBRegressor"),
    ("lightgbm.sklearn", "LGBMClassifier"),
    ("lightgbm.sklearn", "LGBMRegressor"),
}
_XGB_DIRECT = ("binary:logistic", "multi:softprob", "reg:squarederror", "reg:logistic")


def wrapped_booster(model: Any, schema: InputSchema) -> Any:
    """The Booster inside an XGBoost/LightGBM scikit-learn wrapper when its ``predict_proba``
    (or regressor's ``predict``) is exactly that Booster's prediction on the float matrix, so
    it is served without the wrapper's per-call DataFrame conversion and second pass for
    labels: exact wrapper types, numeric schemas, no early-stopping iteration, no custom
    objective, and (XGBoost) an objective whose raw output is what the wrapper returns."""
    kind = (type(model).__module__, type(model).__name__)
    if kind not in _WRAPPERS or any(f.type.value == "category" for f in schema.features):
        return None
    if kind[0] == "lightgbm.sklearn":
        booster = model.booster_
        if callable(model.objective) or booster.best_iteration:
            return None
        return booster
    booster = model.get_booster()
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if booster.attr("best_iteration") is not None or objective not in _XGB_DIRECT:
        return None
    return booster


def feature_names(model: Any) -> list[str] | None:
    """The feature names a model file carries (``feature_names_in_``, a Booster's feature
    names, an ONNX file's per-feature inputs), or None."""
    final = model.steps[0][1] if hasattr(model, "steps") and model.steps else model
    names = getattr(final, "feature_names_in_", None)
    if names is None and hasattr(model, "feature_names_in_"):
        names = model.feature_names_in_
    if names is None and hasattr(model, "get_booster"):
        names = _fitted_booster_names(model)
    if names is None and is_xgboost_booster(model):
        names = model.feature_names
    if names is None and is_lightgbm_booster(model):
        names = model.feature_name()
    if names is None and isinstance(model, OnnxFile):
        names = _onnx_names(model)
    return [str(n) for n in names] if names is not None and len(names) else None


def _fitted_booster_names(wrapper: Any) -> Any:
    try:
        return wrapper.get_booster().feature_names
    except Exception:  # an unfitted wrapper has no booster
        return None


def _onnx_names(model: OnnxFile) -> list[str] | None:
    inputs = model.inputs
    if len(inputs) == 1 and len(inputs[0][2]) == 2 and inputs[0][2][1] != 1:
        return None  # one [N, F] matrix: the graph does not name its features
    return [name for name, _, _ in inputs]
