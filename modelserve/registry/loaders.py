"""Load model artifacts (skops, joblib, pickle) without running code the file chose.

skops archives are checked with ``skops.io.get_untrusted_types`` before loading; only the vetted
data-only types in ``_SKOPS_VETTED_TYPES`` may be reported untrusted.

Pickles (plain, or joblib files, compressed or not) are read by ``_SafeUnpickler``. Every global
the stream names is resolved against ``ALLOWLIST`` (the tables in ``registry/allowlist``) before
its module is imported, and what the stream does with it is bounded by its row: REDUCE, INST and
OBJ may call only reconstructors (numpy's, copyreg's, Cython's, a few constructors of data
types), NEWOBJ may create only constructible classes, empty. Nothing else is ever called: not an
allowed module's functions, not a decorator, not an object the stream built. BUILD sets state
through the instance's class, never on a class or function the stream named, and never dunder
attributes; the same holds inside object arrays nested in joblib files.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Literal, NoReturn, get_args

import joblib
from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler
from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap
from sklearn.exceptions import InconsistentVersionWarning

from modelserve.core.errors import InvalidArtifact, UnsafeArtifact
from modelserve.registry.allowlist import TABLES, Allowed, Allowlist, Table, Use
from modelserve.registry.allowlist.core import under
from modelserve.registry.allowlist.numeric import NP_CORE
from modelserve.registry.formats import NATIVE_LOADERS, library_error
from modelserve.registry.formats.allowlist import format_tables, require_library, skops_vetted_types

ArtifactFormat = Literal["skops", "joblib", "pickle", "xgboost", "lightgbm", "onnx"]
"""How an artifact is serialised."""

_LOAD_LOCK = threading.Lock()
_SKOPS_MAGIC = b"PK\x03\x04"
_COMPRESSED_MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"]\x00")  # gzip, bz2, xz, lzma

# Data-only types skops distrusts by default, yet imputers and tree models all hold them.
_SKOPS_VETTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
_SKOPS_VETTED_TYPES += ("collections.OrderedDict", *skops_vetted_types())


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
    except (UnsafeArtifact, InvalidArtifact, MemoryError):  # the sandbox reports memory
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
    """joblib's unpickler, with every global resolved through the allowlist, every call and
    construction checked against what the allowlist lets that global do, and BUILD kept to
    instances' own state."""

    dispatch = NumpyUnpickler.dispatch.copy()

    def __init__(self, file_handle: IO[bytes]) -> None:
        super().__init__("", file_handle, ensure_native_byte_order=True)

    def find_class(self, module: str, name: str) -> Any:
        """The allowed object ``module.name``; UnsafeArtifact for anything else."""
        if self.proto < 3:
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        for spelling in ("numpy.core", "numpy._core"):
            if under(module, (spelling,)):
                module = NP_CORE + module[len(spelling) :]
        require_library(f"{module}.{name}")  # LibraryMissing names the extra to install
        return ALLOWLIST.resolve(module, name).obj

    def _check_call(self, func: Any, args: tuple[Any, ...], use: Use) -> None:
        grant = ALLOWLIST.grant_of(func)
        if grant is None or grant.use < use:
            verb = "calls" if use is Use.CALL else "constructs"
            _refuse(f"The artifact {verb} {{}}, which it may not.", _describe(func))
        for index in grant.row.class_args:
            arg = args[index] if index < len(args) else None
            if isinstance(arg, type) and not ALLOWLIST.may(arg, Use.CONSTRUCT):
                _refuse(f"The artifact has {grant.qualified} construct {{}}.", _describe(arg))
        for index in grant.row.call_args:
            arg = args[index] if index < len(args) else None
            if arg is not None and not ALLOWLIST.may(arg, Use.CALL):
                _refuse(f"The artifact has {grant.qualified} call {{}}.", _describe(arg))

    def load_reduce(self) -> None:
        """``func(*args)``, for allowed reconstructors only."""
        self._check_call(self.stack[-2], tuple(self.stack[-1]), Use.CALL)
        super().load_reduce()

    def load_newobj(self) -> None:
        """``cls.__new__(cls, *args)``, for constructible classes only."""
        self._check_call(self.stack[-2], tuple(self.stack[-1]), Use.CONSTRUCT)
        super().load_newobj()

    def load_newobj_ex(self) -> None:
        """``cls.__new__(cls, *args, **kwargs)``, for constructible classes only."""
        self._check_call(self.stack[-3], tuple(self.stack[-2]), Use.CONSTRUCT)
        super().load_newobj_ex()

    def _instantiate(self, klass: Any, args: list[Any]) -> None:
        # INST and OBJ (protocols 0 and 1) call the class with the file's arguments.
        self._check_call(klass, tuple(args), Use.CALL)
        super()._instantiate(klass, args)

    def load_build(self) -> None:
        """Set state on an instance through its class's ``__setstate__`` (never one the file put
        on the instance), or into its ``__dict__``; never on a class or function the file named,
        and never a dunder attribute."""
        state, inst = self.stack.pop(), self.stack[-1]
        if ALLOWLIST.grant_of(inst) is not None:
            _refuse("The artifact tries to modify {}.", _describe(inst))
        _refuse_dunders(inst, state)
        setstate = getattr(type(inst), "__setstate__", None)
        if setstate is not None:
            setstate(inst, state)
        else:
            _set_attributes(inst, state)
        if isinstance(self.stack[-1], NumpyArrayWrapper):  # joblib's in-file array
            wrapper = self.stack.pop()
            self.stack.append(wrapper.read(self, self.ensure_native_byte_order))

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build


def _refuse_dunders(inst: Any, state: Any) -> None:
    """Dunder names in an attribute state (``__class__``, ``__setstate__``, ``__deepcopy__``...)
    would change what the object is, or plant behaviour that ``getattr`` finds on the instance
    (pickle's own BUILD, ``copy.deepcopy``): never data."""
    parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
    for part in parts:
        for key in part if isinstance(part, dict) else ():
            if isinstance(key, str) and key.startswith("__") and key.endswith("__"):
                _refuse("The artifact sets {}.", f"{_describe(inst)}.{key}")


def _set_attributes(inst: Any, state: Any) -> None:
    """What pickle's BUILD does for an object without ``__setstate__``."""
    slots = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    if state:
        inst.__dict__.update({sys.intern(k) if type(k) is str else k: v for k, v in state.items()})
    for key, value in (slots or {}).items():
        setattr(inst, key, value)


def _describe(obj: Any) -> str:
    grant = ALLOWLIST.grant_of(obj)
    if grant is not None:
        return grant.qualified
    if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__")):
        return f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"
    kind = type(obj)
    return f"a {kind.__module__}.{kind.__qualname__} instance"


def _refuse(message: str, what: str) -> NoReturn:
    raise UnsafeArtifact(message.format(what), details={"disallowed": [what]})


class _SafeArrayWrapper(NumpyArrayWrapper):  # type: ignore[misc]
    """joblib's in-file array wrapper; object arrays are read by a fresh ``_SafeUnpickler``."""

    def read_array(self, unpickler: Any, ensure_native_byte_order: bool) -> Any:
        """The wrapped array, read from the unpickler's stream."""
        if self.dtype.hasobject:
            return _SafeUnpickler(unpickler.file_handle).load()
        return super().read_array(unpickler, ensure_native_byte_order)


_JOBLIB = Table(
    family="joblib",
    rows=(
        Allowed(
            "joblib.numpy_pickle",
            "NumpyArrayWrapper",
            Use.CONSTRUCT,
            "joblib's marker for "
            "an array stored raw after it; object arrays are read by this same unpickler",
            stand_in=_SafeArrayWrapper,
        ),
    ),
)
ALLOWLIST = Allowlist((*TABLES, _JOBLIB, *format_tables()))
"""Everything an artifact's pickle may name: the families in ``allowlist``, joblib's own,
and the model libraries of ``registry/formats`` (XGBoost, LightGBM)."""
