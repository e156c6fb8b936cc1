"""The library versions a model runs with, and whether a version was trained with others."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

TRACKED_PACKAGES = ("scikit-learn", "numpy", "scipy", "pandas", "joblib", "skops")


def current_environment() -> dict[str, str]:
    """Python and tracked library versions of this process."""
    env = {"python": platform.python_version()}
    for package in TRACKED_PACKAGES:
        try:
            env[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return env


def server_sklearn_version() -> str:
    """The scikit-learn version this server runs."""
    return metadata.version("scikit-learn")


def sklearn_mismatch(environment: dict[str, Any]) -> bool:
    """Whether ``environment`` names a scikit-learn version other than the server's."""
    trained = environment.get("scikit-learn")
    return bool(trained) and str(trained) != server_sklearn_version()
