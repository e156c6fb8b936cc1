"""The optional model libraries (XGBoost, LightGBM, onnxmltools): whether they are installed,
which version, and the error that says how to install one that is missing."""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

from modelserve.core.errors import InvalidArtifact

EXTRAS = {"xgboost": "xgboost", "lightgbm": "lightgbm", "onnxmltools": "onnxmltools"}
"""Library -> the modelserve extra that installs it."""


class LibraryMissing(InvalidArtifact):
    """The model needs an optional library this server does not have."""

    code = "library_missing"


def installed(library: str) -> bool:
    """Whether ``library`` imports here."""
    try:
        importlib.import_module(library)
    except ImportError:
        return False
    return True


def version(library: str) -> str | None:
    """The installed version of ``library``, or None."""
    if not installed(library):
        return None
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return None


def require(library: str) -> Any:
    """The imported ``library``; LibraryMissing (422) saying what to install when absent."""
    try:
        return importlib.import_module(library)
    except ImportError as exc:
        extra = EXTRAS.get(library, library)
        raise LibraryMissing(
            f"This model needs {library}, which this server does not have installed: "
            f"install it with pip install 'modelserve[{extra}]' and restart the server.",
            details={"library": library, "extra": extra},
        ) from exc


def library_of(obj: Any) -> str | None:
    """The optional library an estimator (or a pipeline's last step) comes from, if any."""
    steps = getattr(obj, "steps", None)
    final = steps[-1][1] if isinstance(steps, list) and steps else obj
    root = type(final).__module__.split(".")[0]
    return root if root in ("xgboost", "lightgbm") else None
