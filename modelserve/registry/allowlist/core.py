"""The shape of an allowlist: what a pickle may name, and what it may do with each name.

A pickle stream is a small program: ``GLOBAL`` names an object, ``REDUCE``/``NEWOBJ``/``INST``/
``OBJ`` call or construct one, ``BUILD`` sets an object's state. Every name it uses must match an
``Allowed`` row of some ``Table``, and the row's ``Use`` bounds what the stream may do with it:

* ``VALUE``: referenced as data (``dtype=np.float64``, ``score_func=f_classif``), never called.
* ``CONSTRUCT``: a class created empty (``cls.__new__(cls)``, no ``__init__``) and then filled by
  BUILD, as protocol 2+ pickles create Python objects; also usable as a value.
* ``CALL``: a reconstructor, called with arguments from the file; also constructible.

Anything the stream calls that is not a ``CALL`` row (an allowed module's function, a decorator,
an instance it built) is refused before it runs.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Use(enum.IntEnum):
    """What a pickle may do with an allowed object; each level includes the ones below."""

    VALUE = 1
    CONSTRUCT = 2
    CALL = 3


Admits = Callable[[object], bool]


def anything(obj: object) -> bool:
    """Admits whatever the row names (the row itself is exact)."""
    return True


@dataclass(frozen=True)
class Allowed:
    """One row: ``module.name`` (``module`` may end in ``.*``: the package and everything under
    it, for objects defined there; ``name`` may be a glob) may be used up to ``use``."""

    module: str
    name: str
    use: Use
    reason: str
    """Why this is data-only: what calling or building it can do."""
    admits: Admits = anything
    """Which of the objects the names match this row covers (e.g. only classes)."""
    stand_in: object | None = None
    """A checked replacement handed to the unpickler instead of the real object."""
    class_args: tuple[int, ...] = ()
    """Arguments of a call that, when they are classes, must be constructible."""
    call_args: tuple[int, ...] = ()
    """Arguments of a call that the callee will call: they must be ``CALL`` rows too."""

    @property
    def package(self) -> str | None:
        """The package a ``.*`` row covers; None for an exact module."""
        return self.module[:-2] if self.module.endswith(".*") else None

    def names(self, module: str, name: str) -> bool:
        """Whether the row's names cover ``module.name`` (before anything is imported)."""
        package = self.package
        in_module = module == self.module if package is None else under(module, (package,))
        return in_module and fnmatch.fnmatchcase(name, self.name)


@dataclass(frozen=True)
class Table:
    """The rows one library family contributes, and the parts of it never to be named."""

    family: str
    rows: tuple[Allowed, ...]
    denied: tuple[tuple[str, str], ...] = ()
    """(module prefix, why) pairs: nothing under them is allowed, whatever the rows say."""


@dataclass(frozen=True)
class Grant:
    """An allowed object as the unpickler sees it: what to push, and what it may do."""

    qualified: str
    obj: Any
    use: Use
    row: Allowed = field(repr=False)


def under(module: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``module`` is one of ``prefixes`` or inside one."""
    return any(module == prefix or module.startswith(f"{prefix}.") for prefix in prefixes)


def defines(obj: object, *dunders: str) -> bool:
    """Whether a class (or a base other than ``object``) defines one of ``dunders``."""
    mro = getattr(obj, "__mro__", ())
    return any(d in vars(k) for k in mro if k is not object for d in dunders)


_PLAIN_NEWS: tuple[object, ...] = tuple(
    t.__new__ for t in (object, dict, list, tuple, set, frozenset, int, float, str, bytes)
)


def plain_class(obj: object) -> bool:
    """A class whose instances ``object.__new__`` (or a builtin container's) creates: no code
    of the library runs when the unpickler creates one."""
    return isinstance(obj, type) and any(obj.__new__ is new for new in _PLAIN_NEWS)


def inert_class(obj: object) -> bool:
    """A plain class whose instances are neither callable nor descriptors, so that a built one
    cannot later act as a decorator, a ``__setstate__`` or an attribute hook."""
    return plain_class(obj) and not defines(obj, "__call__", "__get__", "__set__", "__delete__")


def is_class(obj: object) -> bool:
    """Any class."""
    return isinstance(obj, type)
