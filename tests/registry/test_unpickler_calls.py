"""The restricted unpickler calls only reconstructors: a pickle may name an allowed module's
functions, classes and decorators as data, but never call them, construct what may not be
constructed, or plant behaviour on an instance through BUILD. Each hostile stream below is a
gadget followed by a valid model, so a loader that ran the gadget would still answer 201."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from factories import fit_iris, iris_schema, register
from fastapi.testclient import TestClient
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from modelserve.core.errors import UnsafeArtifact
from modelserve.registry.loaders import load_artifact

_RIDGE = Ridge().fit(np.eye(3), [1.0, 2.0, 3.0])


def _global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def _text(value: str) -> bytes:
    data = value.encode()
    return b"X" + len(data).to_bytes(4, "little") + data


DEPRECATED = _global("sklearn.utils.deprecation", "deprecated")
SCALER = _global("sklearn.preprocessing._data", "StandardScaler")
RIDGE = _global("sklearn.linear_model._ridge", "Ridge")
LINK = _global("sklearn._loss.link", "IdentityLink")  # a plain object, no __setstate__
ACCURACY = _global("sklearn.metrics._classification", "accuracy_score")
ONES = b"]K\x01a"  # the list [1]
EMPTY, TUPLE1, TUPLE2, TUPLE3 = b")", b"\x85", b"\x86", b"\x87"
REDUCE, NEWOBJ, BUILD, POP, NONE = b"R", b"\x81", b"b", b"0", b"N"
DECORATOR_STATE = b"}" + _text("extra") + _text("pwned") + b"s"  # what deprecated.__init__ sets


def _then_model(gadget: bytes) -> bytes:
    """``gadget``, its result dropped, then a fitted Ridge: the file loads as a valid model."""
    return b"\x80\x02" + gadget + POP + pickle.dumps(_RIDGE, protocol=2)[2:]


def _decorate_scaler(decorator: bytes) -> bytes:
    """``decorator(StandardScaler)``, the decorator being what the bytes leave on the stack."""
    return decorator + SCALER + TUPLE1 + REDUCE


# name -> (stream, what the refusal names)
HOSTILE: dict[str, tuple[bytes, str]] = {
    # The reported attack: deprecated("...")(StandardScaler) rewrites the server's class.
    "decorator-called-by-reduce": (
        _decorate_scaler(DEPRECATED + _text("pwned") + TUPLE1 + REDUCE),
        "sklearn.utils.deprecation.deprecated",
    ),
    "decorator-built-by-newobj": (
        _decorate_scaler(DEPRECATED + EMPTY + NEWOBJ + DECORATOR_STATE + BUILD),
        "sklearn.utils.deprecation.deprecated",
    ),
    "decorator-built-by-copyreg": (
        _decorate_scaler(
            _global("copyreg", "_reconstructor")
            + DEPRECATED
            + _global("builtins", "object")
            + NONE
            + TUPLE3
            + REDUCE
            + DECORATOR_STATE
            + BUILD
        ),
        "sklearn.utils.deprecation.deprecated",
    ),
    "decorator-built-by-sklearn-newobj-helper": (
        _decorate_scaler(
            _global("sklearn.neighbors._kd_tree", "newObj")
            + DEPRECATED
            + TUPLE1
            + REDUCE
            + DECORATOR_STATE
            + BUILD
        ),
        "sklearn.utils.deprecation.deprecated",
    ),
    # An estimator turned into a decorator by assigning its __class__, then called.
    "class-swapped-by-build": (
        _decorate_scaler(
            LINK
            + EMPTY
            + NEWOBJ
            + NONE
            + b"}"
            + _text("__class__")
            + DEPRECATED
            + b"s"
            + TUPLE2
            + BUILD
            + DECORATOR_STATE
            + BUILD
        ),
        "a sklearn._loss.link.IdentityLink instance.__class__",
    ),
    # A __setstate__ planted in an instance's dict, which the next BUILD would call.
    "setstate-planted-by-build": (
        RIDGE
        + EMPTY
        + NEWOBJ
        + b"}"
        + _text("__setstate__")
        + DEPRECATED
        + b"s"
        + BUILD
        + _text("pwned")
        + BUILD,
        "a sklearn.linear_model._ridge.Ridge instance.__setstate__",
    ),
    "function-called-by-reduce": (
        ACCURACY + ONES + ONES + TUPLE2 + REDUCE,
        "sklearn.metrics._classification.accuracy_score",
    ),
    "newobj-on-a-function": (
        ACCURACY + EMPTY + NEWOBJ,
        "sklearn.metrics._classification.accuracy_score",
    ),
    "constructor-called-by-reduce": (
        SCALER + EMPTY + REDUCE,
        "sklearn.preprocessing._data.StandardScaler",
    ),
    "ufunc-called-by-reduce": (
        _global("numpy", "add") + b"K\x01K\x02" + TUPLE2 + REDUCE,
        "numpy.add",
    ),
    "reconstructor-handed-a-callable": (
        _global("numpy.random._pickle", "__generator_ctor")
        + _text("x")
        + DEPRECATED
        + TUPLE2
        + REDUCE,
        "sklearn.utils.deprecation.deprecated",
    ),
    "reconstructor-handed-a-class": (
        _global("numpy.random._pickle", "__bit_generator_ctor") + SCALER + TUPLE1 + REDUCE,
        "a bit generator 'StandardScaler'",
    ),
    "inst-opcode": (
        b"(K\x00isklearn.preprocessing._data\nStandardScaler\n",
        "sklearn.preprocessing._data.StandardScaler",
    ),
}


@contextmanager
def _scaler_guarded() -> Iterator[dict[str, Any]]:
    """StandardScaler's attributes as they were; restored afterwards even if a test fails."""
    before = dict(vars(StandardScaler))
    try:
        yield before
    finally:
        for key in set(vars(StandardScaler)) - set(before):
            delattr(StandardScaler, key)
        for key, value in before.items():
            if vars(StandardScaler).get(key) is not value:
                setattr(StandardScaler, key, value)


def test_the_streams_are_valid_models_when_the_gadget_is_dropped() -> None:
    """The tail of every hostile file is a model this loader accepts."""
    loaded = load_artifact(_then_model(EMPTY), "pickle").estimator
    assert loaded.predict(np.eye(3)).tolist() == _RIDGE.predict(np.eye(3)).tolist()


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_calls_are_refused_before_running(case: str) -> None:
    gadget, disallowed = HOSTILE[case]
    with _scaler_guarded() as before:
        with pytest.raises(UnsafeArtifact) as excinfo:
            load_artifact(_then_model(gadget), "pickle")
        after = dict(vars(StandardScaler))

    assert excinfo.value.details == {"disallowed": [disallowed]}
    assert after == before


def test_the_reported_upload_is_refused_and_leaves_the_class_alone(client: TestClient) -> None:
    gadget, _ = HOSTILE["decorator-called-by-reduce"]
    iris = pickle.dumps(fit_iris(), protocol=2)
    data = b"\x80\x02" + gadget + POP + iris[2:]

    with _scaler_guarded() as before:
        response = register(client, "iris", data, iris_schema(), filename="iris.pkl")
        after = dict(vars(StandardScaler))

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "unsafe_artifact"
    assert after == before
    assert client.get("/v1/models/iris").status_code == 404
