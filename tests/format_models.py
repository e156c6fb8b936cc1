"""Helpers for tests/formats: breast-cancer data, schemas, and model files in every form."""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import skops.io
from sklearn.datasets import load_breast_cancer


def cancer() -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    """Breast cancer with identifier-like column names."""
    data = load_breast_cancer(as_frame=True)
    frame = data.data.copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    return frame, data.target.to_numpy()


def schema_of(frame: pd.DataFrame) -> dict[str, Any]:
    """A numeric schema of the frame's columns."""
    return {"features": [{"name": c, "type": "number"} for c in frame.columns]}


def instances(frame: pd.DataFrame, rows: list[int]) -> list[dict[str, float]]:
    """Rows of the frame as v1 instances."""
    return [{c: float(frame.iloc[r][c]) for c in frame.columns} for r in rows]


def joblib_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(obj, buffer, compress=3)
    return buffer.getvalue()


def native_bytes(model: Any, suffix: str, tmp: Path) -> bytes:
    """``model`` saved in its library's own format (``.json``/``.ubj``/``.txt``)."""
    path = tmp / f"model{suffix}"
    if suffix == ".txt":
        booster = model.booster_ if hasattr(model, "booster_") else model
        booster.save_model(str(path))
    else:
        model.save_model(str(path))
    return path.read_bytes()


DUMPS: dict[str, Callable[[Any], bytes]] = {
    "joblib": joblib_bytes,
    "pickle": lambda obj: pickle.dumps(obj, protocol=5),
    "skops": lambda obj: bytes(skops.io.dumps(obj)),
}
