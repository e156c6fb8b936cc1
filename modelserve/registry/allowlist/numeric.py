"""numpy and scipy.sparse: arrays, scalars, dtypes, random generators and their reconstructors."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse

from modelserve.core.errors import UnsafeArtifact
from modelserve.registry.allowlist.core import Allowed, Table, Use, is_class, plain_class

NP_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"
"""Where this numpy keeps its core (files name either spelling; loaders map both to this)."""

_DATA_CLASSES: tuple[type, ...] = (np.ndarray, np.generic, np.dtype, np.random.BitGenerator)
_DATA_CLASSES += (np.random.Generator, np.random.RandomState, np.random.SeedSequence)


def _numpy_data_class(obj: object) -> bool:
    return (
        isinstance(obj, type) and issubclass(obj, _DATA_CLASSES) and not issubclass(obj, np.memmap)
    )


def _ndarray_class(obj: object) -> bool:
    return _numpy_data_class(obj) and issubclass(obj, np.ndarray)  # type: ignore[arg-type]


def _bit_generator_class(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, np.random.BitGenerator)


def _ufunc(obj: object) -> bool:
    return isinstance(obj, np.ufunc)


def _sparse_class(obj: object) -> bool:
    sparse = (scipy.sparse.sparray, scipy.sparse.spmatrix)
    return plain_class(obj) and issubclass(obj, sparse)  # type: ignore[arg-type]


_BIT_GENERATORS = {"MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"}


def _bit_generator(bit_generator: Any = "MT19937") -> Any:
    """numpy's ``__bit_generator_ctor`` for a BitGenerator class or name only (numpy's calls any
    class it is given)."""
    if isinstance(bit_generator, str) and bit_generator in _BIT_GENERATORS:
        bit_generator = getattr(np.random, bit_generator)
    if not _bit_generator_class(bit_generator):
        what = f"a bit generator {getattr(bit_generator, '__qualname__', bit_generator)!r}"
        raise UnsafeArtifact(f"The artifact asks for {what}.", details={"disallowed": [what]})
    return bit_generator()


def _random_ctor(kind: type) -> Any:
    """numpy's ``__generator_ctor``/``__randomstate_ctor`` with numpy's own bit generator
    constructor (theirs call whatever callable the file passes)."""

    def ctor(bit_generator_name: Any = "MT19937", bit_generator_ctor: Any = None) -> Any:
        if isinstance(bit_generator_name, np.random.BitGenerator):
            return kind(bit_generator_name)
        if bit_generator_ctor not in (None, _bit_generator):
            what = "a random generator built by a callable of the file's choosing"
            raise UnsafeArtifact(f"The artifact asks for {what}.", details={"disallowed": [what]})
        return kind(_bit_generator(bit_generator_name))

    return ctor


_RANDOM = "numpy.random._pickle"
_REBUILDS = "numpy's own pickles call it to rebuild an array or scalar from shape, dtype and bytes"

TABLE = Table(
    family="numpy",
    rows=(
        Allowed(f"{NP_CORE}.multiarray", "_reconstruct", Use.CALL, _REBUILDS, class_args=(0,)),
        Allowed(f"{NP_CORE}.multiarray", "scalar", Use.CALL, _REBUILDS),
        Allowed(f"{NP_CORE}.numeric", "_frombuffer", Use.CALL, _REBUILDS),
        Allowed("numpy.ma.core", "_mareconstruct", Use.CALL, _REBUILDS, class_args=(0, 1)),
        Allowed("numpy", "dtype", Use.CALL, "a dtype from its code and flags", admits=is_class),
        Allowed(
            _RANDOM,
            "__bit_generator_ctor",
            Use.CALL,
            "a named numpy bit generator",
            stand_in=_bit_generator,
            class_args=(0,),
        ),
        Allowed(
            _RANDOM,
            "__generator_ctor",
            Use.CALL,
            "a Generator on a numpy bit generator",
            stand_in=_random_ctor(np.random.Generator),
            call_args=(1,),
        ),
        Allowed(
            _RANDOM,
            "__randomstate_ctor",
            Use.CALL,
            "a RandomState on a numpy bit generator",
            stand_in=_random_ctor(np.random.RandomState),
            call_args=(1,),
        ),
        Allowed(
            "numpy.random.bit_generator",
            "__pyx_unpickle_SeedSequence",
            Use.CALL,
            "Cython's generated unpickler: checks the layout, sets the seed's fields",
            class_args=(0,),
        ),
        Allowed(
            "numpy.random.bit_generator",
            "SeedSequence",
            Use.CONSTRUCT,
            "a seed: entropy and spawn keys, set by its Cython unpickler",
            admits=is_class,
        ),
        Allowed(
            "numpy.random.*",
            "*",
            Use.CALL,
            "bit generators: their constructor draws a seed; the file's state is then set by BUILD",
            admits=_bit_generator_class,
        ),
        Allowed(
            "numpy.*",
            "*",
            Use.CONSTRUCT,
            "ndarray subclasses (matrix, masked, record "
            "arrays): ndarray.__new__ with a shape and dtype",
            admits=_ndarray_class,
        ),
        Allowed(
            "numpy.*",
            "*",
            Use.VALUE,
            "array, scalar and dtype classes, named as data (dtype=np.float64)",
            admits=_numpy_data_class,
        ),
        Allowed("numpy", "*", Use.VALUE, "ufuncs, named as data (func=np.log1p)", admits=_ufunc),
        Allowed(
            "scipy.sparse.*",
            "*",
            Use.CONSTRUCT,
            "sparse matrix and array classes: plain Python objects holding arrays",
            admits=_sparse_class,
        ),
    ),
    denied=(
        ("numpy.f2py", "compiles and runs code"),
        ("numpy.distutils", "builds code"),
        ("numpy.testing", "test helpers"),
        ("numpy.ctypeslib", "loads shared libraries"),
        ("numpy.lib", "file helpers (open_memmap, load)"),
        ("scipy.sparse.linalg", "solvers with callbacks"),
        ("scipy.sparse.csgraph", "graph algorithms, not data"),
    ),
)
