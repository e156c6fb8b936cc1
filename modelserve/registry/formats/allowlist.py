"""What the restricted unpickler and skops may admit from a model library beyond scikit-learn,
declared as data: one ``AllowedGlobal`` per class, with why it is data-only.

Each library family has its own module (``allow_xgboost``, ``allow_lightgbm``) holding a tuple
``ALLOWED``; ``format_tables`` hands them to the restricted unpickler's allowlist as one table
per library, and ``require_library`` says which extra to install when a pickle names an entry
whose library is missing. ``callable`` says whether the stream may call the object (REDUCE, or
NEWOBJ with arguments); the entries here never need it: their pickles rebuild them with
``cls.__new__`` and hand their state to ``__setstate__``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from modelserve.registry.allowlist.core import Allowed, Table, Use
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


def require_library(qualified: str) -> None:
    """Raise LibraryMissing when ``qualified`` is a declared entry whose library is absent."""
    entry = entries().get(qualified)
    if entry is not None:
        require(entry.library)


def format_tables() -> tuple[Table, ...]:
    """The entries as rows of the restricted unpickler's allowlist (``registry/allowlist``):
    classes the stream may create empty and fill by BUILD, never call."""
    from modelserve.registry.formats import allow_lightgbm, allow_xgboost

    return tuple(
        Table(
            family=family,
            rows=tuple(
                Allowed(e.module, e.name, Use.CALL if e.callable else Use.CONSTRUCT, e.reason)
                for e in allowed
            ),
        )
        for family, allowed in (
            ("xgboost", allow_xgboost.ALLOWED),
            ("lightgbm", allow_lightgbm.ALLOWED),
        )
    )


def skops_vetted_types() -> tuple[str, ...]:
    """Types skops distrusts by default that these entries vouch for."""
    return tuple(entries())
