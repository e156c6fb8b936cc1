"""What the restricted unpickler and skops may admit from a model library beyond scikit-learn,
declared as data: one ``AllowedGlobal`` per class, with why it is data-only.

Each library family has its own module (``allow_xgboost``, ``allow_lightgbm``) holding a tuple
``ALLOWED``; ``allowed_global`` resolves a name a pickle asks for against them, importing the
library only when the pickle names one of its entries (and saying which extra to install when it
is missing). ``callable`` says whether the stream may call the object (REDUCE, or NEWOBJ with
arguments); the entries here never need it: their pickles rebuild them with ``cls.__new__`` and
hand their state to ``__setstate__``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from modelserve.registry.formats.libraries import require


@dataclass(frozen=True)
class AllowedGlobal:
    """One object a model file may name: ``module.name``."""

    module: str
    name: str
    callable: bool
    """Whether the stream may call it (REDUCE, NEWOBJ with arguments), not only rebuild it."""
    reason: str
    """Why loading it runs no code the file chose."""
    library: str
    """The distribution that provides it (what to install when it is missing)."""

    @property
    def qualified(self) -> str:
        """``module.name``."""
        return f"{self.module}.{self.name}"


@cache
def entries() -> dict[str, AllowedGlobal]:
    """Every declared entry by qualified name."""
    from modelserve.registry.formats import allow_lightgbm, allow_xgboost

    return {e.qualified: e for e in (*allow_xgboost.ALLOWED, *allow_lightgbm.ALLOWED)}


def allowed_global(qualified: str) -> object | None:
    """The declared object named ``qualified``, or None when nothing declares it; raises
    LibraryMissing when its library is not installed."""
    entry = entries().get(qualified)
    if entry is None:
        return None
    require(entry.library)
    found: object = getattr(importlib.import_module(entry.module), entry.name)
    return found


def skops_vetted_types() -> tuple[str, ...]:
    """Types skops distrusts by default that these entries vouch for."""
    return tuple(entries())
