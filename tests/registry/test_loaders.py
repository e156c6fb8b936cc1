"""Safe artifact loading: real models round-trip in every format; malicious files never run."""

from __future__ import annotations

import codecs
import io
import os
import pickle
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import sklearn.base
from joblib.numpy_pickle_compat import NDArrayWrapper
from sklearn._loss.link import IdentityLink
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier, export_graphviz
from sklearn.utils import Bunch

from modelserve.core.errors import InvalidArtifact, UnsafeArtifact
from modelserve.registry.loaders import (
    ArtifactFormat,
    detect_format,
    dump_skops,
    load_artifact,
)

Dump = Callable[[Any], bytes]


def _pickled(protocol: int) -> Dump:
    return lambda obj: pickle.dumps(obj, protocol=protocol)


def _joblibbed(compress: Any) -> Dump:
    def dump(obj: Any) -> bytes:
        buf = io.BytesIO()
        joblib.dump(obj, buf, compress=compress)
        return buf.getvalue()

    return dump


# name -> (dump, format to declare, format detect_format must report)
SERIALIZERS: dict[str, tuple[Dump, ArtifactFormat, ArtifactFormat]] = {
    **{f"pickle-{p}": (_pickled(p), "pickle", "pickle") for p in (2, 3, 4, 5)},
    "joblib-raw": (_joblibbed(0), "joblib", "pickle"),
    "joblib-zlib": (_joblibbed(3), "joblib", "joblib"),
    **{
        f"joblib-{c}": (_joblibbed((c, 3)), "joblib", "joblib")
        for c in ("gzip", "bz2", "xz", "lzma")
    },
    "skops": (dump_skops, "skops", "skops"),
}


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[Any, Any]]:
    """Fitted models and the input to compare their predictions on."""
    rng = np.random.RandomState(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    y_reg = x @ np.array([1.0, -2.0, 0.5, 3.0])
    frame = pd.DataFrame(
        {
            "age": np.where(np.arange(60) % 7 == 0, np.nan, rng.normal(40, 10, 60)),
            "income": rng.normal(size=60),
            "city": np.array([["paris", "rome", "oslo", np.nan][i % 4] for i in range(60)], object),
        }
    )
    numeric = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    pre = ColumnTransformer([("num", numeric, ["age", "income"]), ("cat", categorical, ["city"])])
    pipeline = Pipeline([("pre", pre), ("clf", LogisticRegression())])
    x_sparse = sp.csr_matrix(np.where(np.abs(x) > 1, x, 0.0))
    return {
        "pipeline": (pipeline.fit(frame, frame["income"] > 0), frame),
        "random_forest": (RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y), x),
        "hist_gradient_boosting": (HistGradientBoostingClassifier(max_iter=10).fit(x, y), x),
        "gradient_boosting_regressor": (GradientBoostingRegressor(n_estimators=5).fit(x, y_reg), x),
        "ridge": (Ridge().fit(x, y_reg), x),
        "sparse_logistic": (LogisticRegression().fit(x_sparse, y), x_sparse),
        "sparse_svc": (SVC().fit(x_sparse, y), x_sparse),  # support_vectors_ is a csr_matrix
    }


ROUND_TRIPS = [
    (model, serializer)
    for model in (
        "pipeline",
        "random_forest",
        "hist_gradient_boosting",
        "gradient_boosting_regressor",
        "ridge",
        "sparse_logistic",
        "sparse_svc",
    )
    for serializer in SERIALIZERS
    if (model, serializer) != ("sparse_svc", "skops")  # skops distrusts csr_matrix: see below
]


@pytest.mark.parametrize(("model_name", "serializer"), ROUND_TRIPS)
def test_round_trip_predicts_the_same(
    models: dict[str, tuple[Any, Any]], model_name: str, serializer: str
) -> None:
    model, x = models[model_name]
    dump, fmt, detected = SERIALIZERS[serializer]
    data = dump(model)

    loaded = load_artifact(data, fmt)

    assert detect_format(data) == detected
    assert loaded.format == fmt
    assert loaded.trained_sklearn_version is None
    assert type(loaded.estimator) is type(model)
    np.testing.assert_array_equal(loaded.estimator.predict(x), model.predict(x))


@pytest.mark.parametrize("serializer", ["joblib-raw", "joblib-gzip"])
def test_object_arrays_in_joblib_files_load(
    models: dict[str, tuple[Any, Any]], serializer: str
) -> None:
    pipeline = models["pipeline"][0]
    dump, fmt, _ = SERIALIZERS[serializer]

    loaded = load_artifact(dump(pipeline), fmt).estimator

    def categories(p: Any) -> Any:
        return p.named_steps["pre"].named_transformers_["cat"].named_steps["onehot"].categories_[0]

    assert categories(loaded).dtype == object
    assert categories(loaded).tolist() == categories(pipeline).tolist() == ["oslo", "paris", "rome"]


def test_pickles_written_by_numpy_1_load(models: dict[str, tuple[Any, Any]]) -> None:
    ridge, x = models["ridge"]
    data = pickle.dumps(ridge, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray" in data

    loaded = load_artifact(data, "pickle").estimator

    np.testing.assert_array_equal(loaded.predict(x), ridge.predict(x))


@pytest.mark.parametrize("protocol", [0, 1])
def test_old_protocol_pickles_load_when_declared(
    models: dict[str, tuple[Any, Any]], protocol: int
) -> None:
    ridge, x = models["ridge"]
    loaded = load_artifact(pickle.dumps(ridge, protocol=protocol), "pickle").estimator
    np.testing.assert_array_equal(loaded.predict(x), ridge.predict(x))


# --- malicious files -------------------------------------------------------------------------


class _Reduces:
    """Pickles as ``func(*args)``: what a malicious file calls while it is being loaded."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args

    def __call__(self) -> None:
        """Only so that pickle accepts an instance as the callable of another ``_Reduces``."""


def _touch(target: Path) -> _Reduces:
    return _Reduces(os.system, f"touch {target}")


def _object_array_holding(payload: Any) -> np.ndarray[Any, Any]:
    array = np.empty(2, dtype=object)
    array[0], array[1] = "harmless", payload
    return array


def _nest_in_object_array(stream: bytes) -> bytes:
    """A joblib file whose object array's nested pickle stream is ``stream``."""
    data = _joblibbed(0)(np.array([None], dtype=object))
    start = data.index(b"ub\x80") + 2  # the nested stream follows the wrapper's BUILD
    assert data.endswith(b"..")
    return data[:start] + stream + b"."


_TREE = DecisionTreeClassifier().fit(np.eye(2), [0, 1])
SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux
MALICIOUS: dict[str, tuple[Callable[[Path], bytes], ArtifactFormat, str]] = {
    "os.system": (lambda t: pickle.dumps(_touch(t), protocol=4), "pickle", SYSTEM),
    "os.system-protocol-0": (lambda t: pickle.dumps(_touch(t), protocol=0), "pickle", SYSTEM),
    "builtins.eval": (
        lambda t: pickle.dumps(_Reduces(eval, f"__import__('os').system('touch {t}')")),
        "pickle",
        "builtins.eval",
    ),
    "getattr-gadget": (
        lambda t: pickle.dumps(
            _Reduces(_Reduces(getattr, _Reduces(__import__, "os"), "system"), f"touch {t}")
        ),
        "pickle",
        "builtins.getattr",
    ),
    "subprocess.Popen": (
        lambda t: pickle.dumps(_Reduces(subprocess.Popen, ["touch", str(t)])),
        "pickle",
        "subprocess.Popen",
    ),
    "numpy.memmap": (
        lambda t: pickle.dumps(_Reduces(np.memmap, str(t), np.uint8, "w+", 0, (16,))),
        "pickle",
        "numpy.memmap",
    ),
    "joblib-NDArrayWrapper": (
        lambda t: _joblibbed(0)(NDArrayWrapper(str(t), np.ndarray)),
        "joblib",
        "joblib.numpy_pickle_compat.NDArrayWrapper",
    ),
    "sklearn-export_graphviz": (
        lambda t: pickle.dumps(_Reduces(export_graphviz, _TREE, str(t))),
        "pickle",
        "sklearn.tree._export.export_graphviz",
    ),
    "sklearn-Parallel": (
        lambda t: b"\x80\x02csklearn.utils.parallel\nParallel\n)R.",
        "pickle",
        "sklearn.utils.parallel.Parallel",
    ),
    "codec-other-than-latin1": (
        lambda t: pickle.dumps(_Reduces(codecs.encode, "text", "rot13"), protocol=2),
        "pickle",
        "_codecs.encode('rot13')",
    ),
    "os.system-joblib-zlib": (lambda t: _joblibbed(3)(_touch(t)), "joblib", SYSTEM),
    "os.system-in-object-array": (
        lambda t: _joblibbed(0)({"weights": _object_array_holding(_touch(t))}),
        "joblib",
        SYSTEM,
    ),
    "os.system-in-object-array-gzip": (
        lambda t: _joblibbed(("gzip", 3))(_object_array_holding(_touch(t))),
        "joblib",
        SYSTEM,
    ),
}


@pytest.mark.parametrize("case", MALICIOUS)
def test_malicious_files_are_refused_without_running(tmp_path: Path, case: str) -> None:
    make, fmt, disallowed = MALICIOUS[case]
    target = tmp_path / "pwned"
    data = make(target)

    with pytest.raises(UnsafeArtifact) as excinfo:
        load_artifact(data, fmt)

    assert excinfo.value.details == {"disallowed": [disallowed]}
    assert not target.exists()


# BUILD on a class the stream named: plain pickle runs setattr(IdentityLink, "inverse", int),
# silently corrupting every gradient-boosting regressor the process serves.
_PATCH_CLASS = (
    b"\x80\x02csklearn._loss.link\nIdentityLink\nN}X\x07\x00\x00\x00inversecbuiltins\nint\ns\x86b."
)


@pytest.mark.parametrize(
    ("data", "fmt"),
    [(_PATCH_CLASS, "pickle"), (_nest_in_object_array(_PATCH_CLASS), "joblib")],
    ids=["pickle", "nested-in-joblib-object-array"],
)
def test_patching_a_class_is_refused(
    monkeypatch: pytest.MonkeyPatch, data: bytes, fmt: ArtifactFormat
) -> None:
    inverse = IdentityLink.__dict__["inverse"]
    monkeypatch.setattr(IdentityLink, "inverse", inverse)  # restored even if the guard fails

    with pytest.raises(UnsafeArtifact) as excinfo:
        load_artifact(data, fmt)

    assert excinfo.value.details == {"disallowed": ["sklearn._loss.link.IdentityLink"]}
    assert IdentityLink.__dict__["inverse"] is inverse


def _double(x: Any) -> Any:
    return x * 2


class _CustomRidge(Ridge):  # type: ignore[misc]
    """A class skops has never heard of."""


@pytest.mark.parametrize(
    ("make", "untrusted"),
    [
        (lambda x, y: Pipeline([("f", FunctionTransformer(_double)), ("r", Ridge())]), "_double"),
        (lambda x, y: _CustomRidge(), "_CustomRidge"),
        (lambda x, y: SVC(), "scipy.sparse._csr.csr_matrix"),
    ],
    ids=["function", "custom-class", "sparse-matrix"],
)
def test_skops_untrusted_types_are_refused(make: Callable[..., Any], untrusted: str) -> None:
    x = sp.csr_matrix(np.eye(6))
    y = np.array([0, 1] * 3)
    data = dump_skops(make(x, y).fit(x, y))

    with pytest.raises(UnsafeArtifact) as excinfo:
        load_artifact(data, "skops")

    assert any(untrusted in name for name in excinfo.value.details["disallowed"])


# --- invalid files ---------------------------------------------------------------------------


def _ridge_bytes(dump: Dump) -> bytes:
    return dump(Ridge().fit(np.eye(3), [1.0, 2.0, 3.0]))


def _out_of_band() -> bytes:
    return pickle.dumps(np.arange(4.0), protocol=5, buffer_callback=lambda _: False)


INVALID: dict[str, tuple[bytes, ArtifactFormat]] = {
    "empty-pickle": (b"", "pickle"),
    "empty-joblib": (b"", "joblib"),
    "empty-skops": (b"", "skops"),
    "garbage-pickle": (b"hello, not a model", "pickle"),
    "garbage-joblib": (b"x\x9c definitely not zlib", "joblib"),
    "garbage-skops": (b"PK\x03\x04 not a zip", "skops"),
    "truncated-pickle": (_ridge_bytes(_pickled(5))[:60], "pickle"),
    "truncated-joblib-xz": (_ridge_bytes(_joblibbed(("xz", 3)))[:80], "joblib"),
    "truncated-skops": (_ridge_bytes(dump_skops)[:200], "skops"),
    "pickle-declared-skops": (_ridge_bytes(_pickled(5)), "skops"),
    "skops-declared-pickle": (_ridge_bytes(dump_skops), "pickle"),
    "legacy-joblib": (b"ZF0x00000010x\x9c", "joblib"),
    "out-of-band-buffers": (_out_of_band(), "pickle"),
    "class-missing-here": (b"\x80\x02csklearn.linear_model\nNoSuchModel\n)R.", "pickle"),
    "unknown-format": (_ridge_bytes(_pickled(5)), "onnx"),  # type: ignore[dict-item]
}


@pytest.mark.parametrize("case", INVALID)
def test_unreadable_files_are_invalid(case: str) -> None:
    data, fmt = INVALID[case]
    with pytest.raises(InvalidArtifact):
        load_artifact(data, fmt)


@pytest.mark.parametrize(
    ("obj", "fmt"),
    [
        (np.arange(3.0), "pickle"),
        (StandardScaler().fit(np.eye(3)), "pickle"),
        (StandardScaler().fit(np.eye(3)), "joblib"),
        (StandardScaler().fit(np.eye(3)), "skops"),
        (Pipeline([("scale", StandardScaler())]).fit(np.eye(3)), "pickle"),
        (Bunch(predict=1), "pickle"),
    ],
    ids=["ndarray", "scaler-pickle", "scaler-joblib", "scaler-skops", "pipeline", "not-callable"],
)
def test_objects_without_predict_are_invalid(obj: Any, fmt: ArtifactFormat) -> None:
    data = dump_skops(obj) if fmt == "skops" else pickle.dumps(obj)
    with pytest.raises(InvalidArtifact, match="no predict method"):
        load_artifact(data, fmt)


# --- format detection and version reporting --------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"PK\x03\x04rest", "skops"),
        (b"x\x9crest", "joblib"),
        (b"x\x01rest", "joblib"),
        (b"\x1f\x8brest", "joblib"),
        (b"BZh9rest", "joblib"),
        (b"\xfd7zXZ\x00rest", "joblib"),
        (b"]\x00\x00\x80rest", "joblib"),
        (b"\x80\x02rest", "pickle"),
        (b"\x80\x05rest", "pickle"),
    ],
)
def test_detect_format(data: bytes, expected: str) -> None:
    assert detect_format(data) == expected


@pytest.mark.parametrize(
    "data", [b"", b"x", b"xyz is text", b'{"a": 1}', b"(lp0\n.", b"ZF0x10", b"PK\x05\x06"]
)
def test_detect_format_refuses_unknown_bytes(data: bytes) -> None:
    with pytest.raises(InvalidArtifact):
        detect_format(data)


@pytest.mark.parametrize("serializer", ["pickle-5", "joblib-zlib", "skops"])
def test_reports_the_scikit_learn_version_a_file_was_made_with(
    monkeypatch: pytest.MonkeyPatch, models: dict[str, tuple[Any, Any]], serializer: str
) -> None:
    ridge, x = models["ridge"]
    dump, fmt, _ = SERIALIZERS[serializer]
    monkeypatch.setattr(sklearn.base, "__version__", "1.0.0")
    data = dump(ridge)
    monkeypatch.undo()

    loaded = load_artifact(data, fmt)

    assert loaded.trained_sklearn_version == "1.0.0"
    np.testing.assert_array_equal(loaded.estimator.predict(x), ridge.predict(x))
