"""Load model artifacts (skops, joblib, pickle) without running code the file chose.

skops archives are checked with ``skops.io.get_untrusted_types`` before loading; only the vetted
data-only types in ``_SKOPS_VETTED_TYPES`` may be reported untrusted.

Pickles (plain, or joblib files, compressed or not) are read by ``_SafeUnpickler``: every global
the stream names is resolved against an allowlist *before* its module is imported:

* classes from ``sklearn.*`` (not joblib-parallel helpers, datasets, externals, tests), plus a
  few pure functions: scoring metrics, univariate feature scores, Cython ``newObj`` helpers;
* numpy arrays, scalars, dtypes and random generators (never ``numpy.memmap``), ufuncs, and the
  reconstruction helpers numpy's own pickles name;
* ``scipy.sparse`` matrix and array classes;
* data-only builtins, ``copyreg._reconstructor``, ``collections.OrderedDict``/``defaultdict``,
  ``_codecs.encode`` for latin-1 only, and joblib's in-file ``NumpyArrayWrapper``.

Anything else raises ``UnsafeArtifact`` before it is imported or called. BUILD on a resolved
global (monkeypatching a class) is refused too, also inside object arrays nested in joblib files.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import contextlib
import functools
import importlib
import io
import pickle
import threading
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Literal, get_args

import joblib
import numpy as np
import scipy.sparse
from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler
from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap
from sklearn.exceptions import InconsistentVersionWarning

from modelserve.core.errors import InvalidArtifact, UnsafeArtifact
from modelserve.registry.formats import NATIVE_LOADERS, library_error
from modelserve.registry.formats.allowlist import allowed_global, skops_vetted_types

ArtifactFormat = Literal["skops", "joblib", "pickle", "xgboost", "lightgbm", "onnx"]
"""How an artifact is serialised."""

_LOAD_LOCK = threading.Lock()
_SKOPS_MAGIC = b"PK\x03\x04"
_COMPRESSED_MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"]\x00")  # gzip, bz2, xz, lzma
_NP_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Data-only types skops distrusts by default, yet imputers and tree models all hold them.
_SKOPS_VETTED_TYPES = _names("""
    numpy.dtype sklearn.tree._tree.Tree
    sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor
""")
_SKOPS_VETTED_TYPES += ("collections.OrderedDict", *skops_vetted_types())
_SAFE_BUILTINS = _names("bool bytearray bytes complex dict float frozenset int list object range")
_SAFE_BUILTINS += _names("set slice str tuple")
_HELPERS = _names(f"""
    {_NP_CORE}.multiarray._reconstruct {_NP_CORE}.multiarray.scalar {_NP_CORE}.numeric._frombuffer
    numpy.ma.core._mareconstruct numpy.random.bit_generator.__pyx_unpickle_SeedSequence
    numpy.random._pickle.__randomstate_ctor numpy.random._pickle.__bit_generator_ctor
    numpy.random._pickle.__generator_ctor sklearn.metrics._dist_metrics.newObj
    sklearn.neighbors._ball_tree.newObj sklearn.neighbors._kd_tree.newObj
    copyreg._reconstructor collections.OrderedDict collections.defaultdict
""")
_SKLEARN_DENIED = _names("""
    sklearn.externals sklearn.datasets sklearn.experimental sklearn.utils.parallel
    sklearn.utils._joblib sklearn.utils._testing sklearn.utils._show_versions
""")
_SKLEARN_FUNCTION_MODULES = _names("""
    sklearn.metrics._classification sklearn.metrics._regression sklearn.metrics._ranking
    sklearn.feature_selection._univariate_selection sklearn.feature_selection._mutual_info
""")
_NUMPY_MODULES = _names("""
    numpy._core numpy.core numpy.dtypes numpy.ma numpy.random numpy.matrixlib numpy.rec numpy.char
""")
_NUMPY_CLASSES: tuple[type, ...] = (np.ndarray, np.generic, np.dtype, np.random.BitGenerator)
_NUMPY_CLASSES += (np.random.Generator, np.random.RandomState, np.random.SeedSequence)


@dataclass(frozen=True)
class LoadedArtifact:
    """A safely loaded model and what its file revealed."""

    estimator: Any
    format: ArtifactFormat
    trained_sklearn_version: str | None
    """scikit-learn version the file was made with, when it differs from ours; else None."""


def detect_format(data: bytes) -> ArtifactFormat:
    """The format the leading bytes announce; InvalidArtifact when they announce none."""
    if data.startswith(_SKOPS_MAGIC):
        return "skops"
    zlib_header = len(data) > 1 and data[0] == 0x78 and int.from_bytes(data[:2], "big") % 31 == 0
    if zlib_header or data.startswith(_COMPRESSED_MAGICS):
        return "joblib"
    if data.startswith(b"\x80"):
        return "pickle"
    raise InvalidArtifact(
        "Unrecognised artifact: not a skops archive, a joblib file or a pickle (protocol 2+).",
        details={"leading_bytes": data[:8].hex()},
    )


def load_artifact(data: bytes, fmt: ArtifactFormat) -> LoadedArtifact:
    """Load ``data`` as ``fmt`` without executing anything outside the allowlist.

    Raises UnsafeArtifact (``details["disallowed"]``) when the file needs anything else, and
    InvalidArtifact when it is unreadable or holds no object with a callable ``predict``.
    """
    loader = _LOADERS.get(fmt)
    if loader is None:
        allowed = list(get_args(ArtifactFormat))
        raise InvalidArtifact(
            f"Unknown artifact format {fmt!r}.", details={"format": fmt, "allowed": allowed}
        )
    # catch_warnings swaps process-global state; one load at a time keeps it from interleaving
    # with another thread's load (loads are rare: once per version per process).
    with _LOAD_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator = _load_predictor(loader, data, fmt)
    versions = [w.message for w in caught if isinstance(w.message, InconsistentVersionWarning)]
    trained = str(versions[0].original_sklearn_version) if versions else None
    return LoadedArtifact(estimator=estimator, format=fmt, trained_sklearn_version=trained)


def dump_skops(estimator: Any) -> bytes:
    """Serialise ``estimator`` with skops."""
    import skops.io

    data: bytes = skops.io.dumps(estimator)
    return data


def serving_form(estimator: Any) -> bytes | None:
    """``estimator`` (which a safe loader produced) as an uncompressed joblib file that the
    restricted unpickler loads back, or None when it would refuse it. Loading it needs no
    skops: ``import skops.io`` imports every scikit-learn estimator module, about half of a
    server's start-up time."""
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer, compress=0)
    content = buffer.getvalue()
    try:
        load_artifact(content, "joblib")
    except (UnsafeArtifact, InvalidArtifact):
        return None
    return content


def _load_predictor(loader: Callable[[bytes], Any], data: bytes, fmt: str) -> Any:
    try:
        estimator = loader(data)
        if not callable(getattr(estimator, "predict", None)):
            kind = type(estimator).__name__
            raise InvalidArtifact(
                f"The loaded {kind} has no predict method.", details={"type": kind}
            )
    except (UnsafeArtifact, InvalidArtifact):
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        raise library_error(exc) or InvalidArtifact(
            f"The {fmt} artifact cannot be read.", details={"error": error}
        ) from exc
    return estimator


def _load_skops(data: bytes) -> Any:
    import skops.io  # here, not at import time: see serving_form

    untrusted = sorted(skops.io.get_untrusted_types(data=data))
    refused = [name for name in untrusted if name not in _SKOPS_VETTED_TYPES]
    if refused:
        raise UnsafeArtifact(
            "The skops file contains types that are not trusted.", details={"disallowed": refused}
        )
    return skops.io.loads(data, trusted=untrusted)


def _load_pickle(data: bytes) -> Any:
    with _validate_fileobject_and_memmap(io.BytesIO(data), "", None) as (fobj, _):
        if isinstance(fobj, str):  # joblib < 0.10 layout: arrays live in companion files
            raise InvalidArtifact("Legacy joblib (< 0.10) files are not supported.")
        return _SafeUnpickler(fobj).load()


_LOADERS: dict[str, Callable[[bytes], Any]] = {
    "skops": _load_skops,
    "joblib": _load_pickle,
    "pickle": _load_pickle,
    **NATIVE_LOADERS,
}


class _SafeUnpickler(NumpyUnpickler):  # type: ignore[misc]
    """joblib's unpickler with globals resolved through the allowlist and BUILD on them refused."""

    dispatch = NumpyUnpickler.dispatch.copy()

    def __init__(self, file_handle: IO[bytes]) -> None:
        super().__init__("", file_handle, ensure_native_byte_order=True)
        self._resolved: set[int] = set()  # ids of module-level objects, alive for good

    def find_class(self, module: str, name: str) -> Any:
        """The allowed object ``module.name``; UnsafeArtifact for anything else."""
        if self.proto < 3:
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = _resolve(module, name)
        self._resolved.add(id(found))
        return found

    def load_build(self) -> None:
        """Set state on an instance, never on a class or function the stream named."""
        target = self.stack[-2] if len(self.stack) > 1 else None
        if id(target) in self._resolved:
            name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__name__', '?')}"
            raise UnsafeArtifact(
                "The artifact tries to modify a class or function.",
                details={"disallowed": [name]},
            )
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build


class _SafeArrayWrapper(NumpyArrayWrapper):  # type: ignore[misc]
    """joblib's in-file array wrapper; object arrays are read by a fresh ``_SafeUnpickler``."""

    def read_array(self, unpickler: Any, ensure_native_byte_order: bool) -> Any:
        """The wrapped array, read from the unpickler's stream."""
        if self.dtype.hasobject:
            return _SafeUnpickler(unpickler.file_handle).load()
        return super().read_array(unpickler, ensure_native_byte_order)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes; latin-1 only."""
    if encoding not in {"latin1", "latin-1"}:
        disallowed = [f"_codecs.encode({encoding!r})"]
        raise UnsafeArtifact("The artifact asks for a codec.", details={"disallowed": disallowed})
    return text.encode("latin1")


@functools.cache
def _explicit() -> dict[str, object]:
    found: dict[str, object] = {f"builtins.{n}": getattr(builtins, n) for n in _SAFE_BUILTINS}
    for path in _HELPERS:
        module, _, name = path.rpartition(".")
        with contextlib.suppress(ImportError, AttributeError):  # absent in this version
            found[path] = getattr(importlib.import_module(module), name)
    found["_codecs.encode"] = _latin1_encode
    found["joblib.numpy_pickle.NumpyArrayWrapper"] = _SafeArrayWrapper
    return found


def _resolve(module: str, name: str) -> Any:
    for spelling in ("numpy.core", "numpy._core"):
        if _under(module, (spelling,)):
            module = _NP_CORE + module[len(spelling) :]
    qualified = f"{module}.{name}"
    explicit = _explicit()
    if qualified in explicit:
        return explicit[qualified]
    if (declared := allowed_global(qualified)) is not None:  # registry/formats/allow_*.py
        return declared
    family = _family(module) if name.isidentifier() else None
    found = _import(module, name) if family else None
    if family is None or not _allowed_object(family, found):
        raise UnsafeArtifact(
            f"The artifact needs {qualified}, which is not allowed.",
            details={"disallowed": [qualified]},
        )
    return found


def _import(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise InvalidArtifact(
            f"The artifact needs {module}.{name}, which this environment lacks.",
            details={"missing": f"{module}.{name}"},
        ) from exc


def _family(module: str) -> str | None:
    if any(part in {"tests", "conftest"} or part.startswith("__") for part in module.split(".")):
        return None
    if _under(module, ("sklearn",)) and not _under(module, _SKLEARN_DENIED):
        return "sklearn"
    if module == "numpy" or _under(module, _NUMPY_MODULES):
        return "numpy"
    if module == "scipy.sparse" or (module.startswith("scipy.sparse._") and module.count(".") == 2):
        return "scipy"
    return None


def _allowed_object(family: str, obj: object) -> bool:
    if family == "numpy" and isinstance(obj, np.ufunc):
        return True
    owner = getattr(obj, "__module__", None)
    if not isinstance(owner, str) or _family(owner) != family:
        return False
    if family == "sklearn" and isinstance(obj, types.FunctionType):
        return owner in _SKLEARN_FUNCTION_MODULES
    if not isinstance(obj, type):
        return False
    if family == "sklearn":
        return not issubclass(obj, (joblib.Parallel, joblib.Memory))
    if family == "scipy":
        return issubclass(obj, (scipy.sparse.sparray, scipy.sparse.spmatrix))
    return issubclass(obj, _NUMPY_CLASSES) and not issubclass(obj, np.memmap)


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(f"{prefix}.") for prefix in prefixes)
