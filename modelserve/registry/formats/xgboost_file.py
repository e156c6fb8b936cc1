"""XGBoost's own model files (``save_model`` to ``.json`` or ``.ubj``): read by XGBoost's model
parser, which reads data and runs nothing. A file saved from the scikit-learn wrapper (its
``scikit_learn`` attribute says classifier or regressor) loads as ``XGBClassifier`` /
``XGBRegressor``, served like any scikit-learn estimator; any other as a ``Booster``."""

from __future__ import annotations

import json
from typing import Any

from modelserve.core.errors import InvalidArtifact
from modelserve.registry.formats.libraries import require

RESAVE_HINT = (
    "Load the model with the XGBoost version that made it and re-save it with "
    "model.save_model('model.json'), then register model.json."
)


def looks_like(data: bytes) -> bool:
    """Whether ``data`` is an XGBoost JSON or UBJSON model (its first key is ``learner``)."""
    return data[:1] == b"{" and b"learner" in data[:32]


def load(data: bytes) -> Any:
    """A Booster, or the scikit-learn wrapper the file was saved from."""
    xgboost = require("xgboost")
    booster = xgboost.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgboost.core.XGBoostError as exc:
        raise unreadable(exc) from exc
    kind = _estimator_type(booster.attr("scikit_learn"))
    if kind == "classifier":
        wrapper: Any = xgboost.XGBClassifier()
    elif kind == "regressor":
        wrapper = xgboost.XGBRegressor()
    else:
        return booster
    wrapper.load_model(bytearray(data))
    return wrapper


def _estimator_type(attribute: str | None) -> str | None:
    try:
        meta = json.loads(attribute) if attribute else {}
    except ValueError:
        return None
    kind = meta.get("_estimator_type") if isinstance(meta, dict) else None
    return kind if isinstance(kind, str) else None


def unreadable(exc: BaseException) -> InvalidArtifact:
    """The 422 for a model XGBoost refuses: what it said, and how to make a file it reads."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return InvalidArtifact(
        "The installed XGBoost cannot read this model (a file from an older XGBoost, such as a "
        f"1.x pickle, or a damaged one). {RESAVE_HINT}",
        details={"library": "xgboost", "version": _version(), "error": first[:300]},
    )


def _version() -> str | None:
    from modelserve.registry.formats.libraries import version

    return version("xgboost")
