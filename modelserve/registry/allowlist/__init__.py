"""Which globals a pickle may name, and whether it may call them: one table per library family.

To admit a new library (say XGBoost), add a module here with a ``TABLE`` of ``Allowed`` rows
(module, name, use, reason) and append it to ``TABLES``; nothing else changes.
"""

from __future__ import annotations

import importlib
import threading

from modelserve.core.errors import InvalidArtifact, UnsafeArtifact
from modelserve.registry.allowlist import numeric, python, scikit_learn
from modelserve.registry.allowlist.core import Allowed, Grant, Table, Use, under

TABLES: tuple[Table, ...] = (python.TABLE, numeric.TABLE, scikit_learn.TABLE)
"""The families every artifact may draw on."""

__all__ = ["TABLES", "Allowed", "Allowlist", "Grant", "Table", "Use"]


class Allowlist:
    """Resolves the names a pickle uses against ``tables``, importing only what a row names."""

    def __init__(self, tables: tuple[Table, ...]) -> None:
        self.tables = tables
        self._denied = tuple(prefix for t in tables for prefix, _ in t.denied)
        self._grants: dict[tuple[str, str], Grant] = {}
        self._by_id: dict[int, Grant] = {}  # granted objects are module-level: alive for good
        self._lock = threading.Lock()

    def resolve(self, module: str, name: str) -> Grant:
        """The grant for ``module.name``; UnsafeArtifact when no row allows it."""
        key = (module, name)
        grant = self._grants.get(key)
        if grant is None:
            grant = self._resolve(module, name)
            with self._lock:
                self._grants[key] = grant
                known = self._by_id.get(id(grant.obj))
                if known is None or known.use < grant.use:
                    self._by_id[id(grant.obj)] = grant
        return grant

    def grant_of(self, obj: object) -> Grant | None:
        """The grant an object the unpickler holds came from; None for anything it built."""
        grant = self._by_id.get(id(obj))
        return grant if grant is not None and grant.obj is obj else None

    def may(self, obj: object, use: Use) -> bool:
        """Whether ``obj`` is an allowed global that may be used as ``use``."""
        grant = self.grant_of(obj)
        if grant is None and isinstance(obj, type):  # reached through another call's result
            try:
                grant = self.resolve(obj.__module__, obj.__qualname__)
            except (UnsafeArtifact, InvalidArtifact):
                return False
            grant = grant if grant.obj is obj else None
        return grant is not None and grant.use >= use

    def _resolve(self, module: str, name: str) -> Grant:
        qualified = f"{module}.{name}"
        refused = UnsafeArtifact(
            f"The artifact needs {qualified}, which is not allowed.",
            details={"disallowed": [qualified]},
        )
        if not name.isidentifier() or self._denied_module(module):
            raise refused
        rows = [row for t in self.tables for row in t.rows if row.names(module, name)]
        if not rows:
            raise refused
        stand_ins = [row for row in rows if row.stand_in is not None]
        if stand_ins:
            row = stand_ins[0]
            return Grant(qualified, row.stand_in, row.use, row)
        found = _import(module, name)
        admitted = [row for row in rows if row.admits(found) and self._owned(row, found)]
        if not admitted:
            raise refused
        row = max(admitted, key=lambda r: r.use)
        return Grant(qualified, found, row.use, row)

    def _denied_module(self, module: str) -> bool:
        parts = module.split(".")
        if any(part in {"tests", "conftest"} or part.startswith("__") for part in parts):
            return True
        return under(module, self._denied)

    def _owned(self, row: Allowed, obj: object) -> bool:
        """A ``.*`` row covers only objects defined in its package (not what it re-exports)."""
        package = row.package
        if package is None:
            return True
        owner = getattr(obj, "__module__", None)
        return (
            isinstance(owner, str) and under(owner, (package,)) and not self._denied_module(owner)
        )


def _import(module: str, name: str) -> object:
    try:
        found: object = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise InvalidArtifact(
            f"The artifact needs {module}.{name}, which this environment lacks.",
            details={"missing": f"{module}.{name}"},
        ) from exc
    return found
