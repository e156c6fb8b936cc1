"""Model formats beyond scikit-learn's files: XGBoost and LightGBM native model files, ONNX
files, and the allowlist entries pickles of XGBoost/LightGBM estimators need.

``NATIVE_LOADERS`` maps each native format to its loader (bytes -> model); ``native_format``
names the format a file's extension or leading bytes announce.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath
from typing import Any, Literal

from modelserve.registry.formats import lightgbm_file, onnx_file, xgboost_file

NativeFormat = Literal["xgboost", "lightgbm", "onnx"]
"""A library's own model file: XGBoost JSON/UBJSON, LightGBM text, ONNX."""

NATIVE_LOADERS: dict[str, Callable[[bytes], Any]] = {
    "xgboost": xgboost_file.load,
    "lightgbm": lightgbm_file.load,
    "onnx": onnx_file.load,
}
NATIVE_LIBRARIES: dict[str, str] = {"xgboost": "xgboost", "lightgbm": "lightgbm"}
"""Native format -> the optional library that loads it."""

_EXTENSIONS: dict[str, NativeFormat] = {
    ".json": "xgboost",
    ".ubj": "xgboost",
    ".txt": "lightgbm",
    ".onnx": "onnx",
}


def native_format(data: bytes, filename: str | None) -> NativeFormat | None:
    """The native format the file's extension, else its leading bytes, announce; or None."""
    suffix = PurePath(filename).suffix.lower() if filename else ""
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if xgboost_file.looks_like(data):
        return "xgboost"
    if lightgbm_file.looks_like(data):
        return "lightgbm"
    if onnx_file.looks_like(data):
        return "onnx"
    return None


def library_error(exc: BaseException) -> Exception | None:
    """The explained 422 for an error XGBoost or LightGBM raised reading a model (a pickle
    from an older version, a damaged file); None for other errors."""
    module = type(exc).__module__
    if module.startswith("xgboost"):
        return xgboost_file.unreadable(exc)
    if module.startswith("lightgbm"):
        return lightgbm_file.unreadable(exc)
    return None
