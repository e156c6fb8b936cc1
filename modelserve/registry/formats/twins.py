"""ONNX twins of XGBoost and LightGBM models: onnxmltools' converters registered with skl2onnx,
so ``registry/onnx.py`` converts an ``XGBClassifier``/``LGBMClassifier`` (alone or as a
pipeline's last step) like any scikit-learn estimator and verifies it the same way."""

from __future__ import annotations

import copy
import functools
from typing import Any

from modelserve.inference.boosters import is_lightgbm_booster, is_xgboost_booster
from modelserve.registry.formats.libraries import installed, library_of
from modelserve.registry.formats.onnx_file import OnnxFile

_CLASSIFIER_OPTIONS: dict[str, Any] = {"nocl": [True, False], "zipmap": [True, False, "columns"]}


def twin_unavailable(model: Any) -> str | None:
    """Why ``model`` can get no twin (None: try), registering the converters it needs."""
    if isinstance(model, OnnxFile):
        return "the model is an ONNX file already"
    if is_xgboost_booster(model) or is_lightgbm_booster(model):
        return "a bare Booster has no ONNX twin (register the scikit-learn wrapper's file)"
    library = library_of(model)
    if library is None:
        return None
    if not installed("onnxmltools"):
        return "onnxmltools is not installed (pip install 'modelserve[onnxmltools]')"
    if library == "xgboost":
        _register_xgboost()
    else:
        _register_lightgbm()
    return None


def convertible(model: Any) -> Any:
    """``model`` as onnxmltools can convert it: an XGBoost model (or pipeline ending in one)
    whose Booster names its features is copied with the names dropped, as its converter reads
    only ``f0, f1...``; the twin takes the schema-ordered matrix either way."""
    if library_of(model) != "xgboost":
        return model
    steps = getattr(model, "steps", None)
    final = steps[-1][1] if steps else model
    if final.get_booster().feature_names is None:
        return model
    model = copy.deepcopy(model)
    final = model.steps[-1][1] if steps else model
    final.get_booster().feature_names = None
    return model


@functools.cache
def _register_xgboost() -> None:
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from xgboost import XGBClassifier, XGBRegressor

    update_registered_converter(
        XGBClassifier,
        "XGBoostXGBClassifier",
        calculate_linear_classifier_output_shapes,
        convert_xgboost,
        options=_CLASSIFIER_OPTIONS,
    )
    update_registered_converter(
        XGBRegressor,
        "XGBoostXGBRegressor",
        calculate_linear_regressor_output_shapes,
        convert_xgboost,
    )


@functools.cache
def _register_lightgbm() -> None:
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options=_CLASSIFIER_OPTIONS,
    )
    update_registered_converter(
        LGBMRegressor,
        "LightGbmLGBMRegressor",
        calculate_linear_regressor_output_shapes,
        convert_lightgbm,
        options={"split": None},
    )
