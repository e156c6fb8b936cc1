"""The Python standard library: builtin value types and the reconstructors pickle itself uses."""

from __future__ import annotations

import collections
import copyreg
from typing import Any

from modelserve.core.errors import UnsafeArtifact
from modelserve.registry.allowlist.core import Allowed, Table, Use, is_class

_BUILTIN_BASES: tuple[type, ...] = (object, dict, list, tuple, set, frozenset, int, float, str)
_BUILTIN_BASES += (bytes, bytearray, complex)


def _refuse(what: str) -> UnsafeArtifact:
    return UnsafeArtifact(f"The artifact asks for {what}.", details={"disallowed": [what]})


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 objects) for builtin bases only: with another
    base it would run that base's ``__init__`` on the file's state."""
    if base not in _BUILTIN_BASES:
        raise _refuse(f"copyreg._reconstructor with base {getattr(base, '__qualname__', base)}")
    return copyreg._reconstructor(cls, base, state)  # type: ignore[attr-defined]


_FACTORIES: tuple[type, ...] = (list, dict, set, int, float, str, collections.OrderedDict)


def _defaultdict(factory: Any = None, *args: Any) -> Any:
    """``collections.defaultdict`` whose factory is None or a builtin value type (or an
    ``OrderedDict``, as LightGBM's pickles use): the factory runs whenever the model reads a
    missing key."""
    if factory is not None and factory not in _FACTORIES:
        raise _refuse(f"collections.defaultdict({getattr(factory, '__qualname__', factory)})")
    return collections.defaultdict(factory, *args)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes; latin-1 only."""
    if encoding not in {"latin1", "latin-1"}:
        raise _refuse(f"_codecs.encode({encoding!r})")
    return text.encode("latin1")


_VALUE_TYPES = "bytearray bytes complex dict frozenset list set slice tuple"
_CONSTRUCTIBLE = "object int float str bool range"

TABLE = Table(
    family="python",
    rows=(
        *(
            Allowed(
                "builtins",
                name,
                Use.CALL,
                "a builtin value type: builds a value from the "
                "file's data and runs no code of the file's choosing",
                admits=is_class,
            )
            for name in _VALUE_TYPES.split()
        ),
        *(
            Allowed(
                "builtins",
                name,
                Use.CONSTRUCT,
                "a builtin type pickles name as a value or as the base of a reconstructed object",
                admits=is_class,
            )
            for name in _CONSTRUCTIBLE.split()
        ),
        Allowed(
            "copyreg",
            "_reconstructor",
            Use.CALL,
            "protocol 0/1 object creation: "
            "base.__new__(cls) for a constructible cls and a builtin base",
            stand_in=_reconstructor,
            class_args=(0, 1),
        ),
        Allowed(
            "collections",
            "OrderedDict",
            Use.CALL,
            "a dict; filled from the file's items",
            admits=is_class,
        ),
        Allowed(
            "collections",
            "defaultdict",
            Use.CALL,
            "a dict whose factory is a builtin value type",
            stand_in=_defaultdict,
        ),
        Allowed(
            "_codecs",
            "encode",
            Use.CALL,
            "protocol 2 writes bytes as latin-1 text",
            stand_in=_latin1_encode,
        ),
    ),
)
