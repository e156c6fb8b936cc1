"""LightGBM's own text model files (``booster_.save_model('model.txt')``): read by LightGBM's
model parser, which reads data and runs nothing; served as a ``lightgbm.Booster``."""

from __future__ import annotations

from typing import Any

from modelserve.core.errors import InvalidArtifact
from modelserve.registry.formats.libraries import require, version

RESAVE_HINT = (
    "Load the model with the LightGBM version that made it and re-save it with "
    "model.booster_.save_model('model.txt'), then register model.txt."
)


def looks_like(data: bytes) -> bool:
    """Whether ``data`` is a LightGBM text model."""
    return data.startswith(b"tree\n") and b"version=" in data[:64]


def load(data: bytes) -> Any:
    """The Booster the text describes."""
    lightgbm = require("lightgbm")
    try:
        text = data.decode("utf-8")
        return lightgbm.Booster(model_str=text)
    except (UnicodeDecodeError, lightgbm.basic.LightGBMError) as exc:
        raise unreadable(exc) from exc


def unreadable(exc: BaseException) -> InvalidArtifact:
    """The 422 for a model LightGBM refuses: what it said, and how to make a file it reads."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return InvalidArtifact(
        "The installed LightGBM cannot read this model (a file from another LightGBM version, "
        f"or a damaged one). {RESAVE_HINT}",
        details={"library": "lightgbm", "version": version("lightgbm"), "error": first[:300]},
    )
