"""Hostile pickles reaching through allowed XGBoost/LightGBM classes are refused with nothing
run; files the installed library cannot read, and servers without the library, get clear 422s."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from factories import register
from fastapi.testclient import TestClient
from format_models import DUMPS, instances, native_bytes, schema_of


def _str(text: str) -> bytes:
    raw = text.encode()
    return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw


def _stack_global(module: str, name: str) -> bytes:
    return _str(module) + _str(name) + pickle.STACK_GLOBAL


def _frame(body: bytes) -> bytes:
    return pickle.PROTO + b"\x04" + body + pickle.STOP


def through_dotted_global(marker: Path, module: str) -> bytes:
    """``module``'s ``os.system('touch marker')``: plain pickle resolves the dotted name."""
    call = _str(f"touch {marker}") + pickle.TUPLE1 + pickle.REDUCE
    return _frame(_stack_global(module, "os.system") + call)


def build_on_class(module: str, name: str) -> bytes:
    """BUILD on an allowed class itself: replaces its ``__setstate__`` (monkeypatching it)."""
    state = pickle.NONE + pickle.EMPTY_DICT + _str("__setstate__")
    state += _stack_global("builtins", "dict") + pickle.SETITEM + pickle.TUPLE2
    return _frame(_stack_global(module, name) + state + pickle.BUILD)


def reduce_booster(module: str, model_file: Path) -> bytes:
    """Calls an allowed Booster's constructor with a path: it would read a file of the
    server's (a model here, so a successful read would register)."""
    args = pickle.NONE + pickle.NONE + _str(str(model_file)) + pickle.TUPLE3
    if module == "lightgbm.basic":  # Booster(params, train_set, model_file)
        args = pickle.NONE + pickle.NONE + _str(str(model_file)) + pickle.TUPLE3
    return _frame(_stack_global(module, "Booster") + args + pickle.REDUCE)


BOOSTERS = {"xgboost": "xgboost.core", "lightgbm": "lightgbm.basic"}
WRAPPERS = {
    "xgboost": ("xgboost.sklearn", "XGBClassifier"),
    "lightgbm": ("lightgbm.sklearn", "LGBMClassifier"),
}


def assert_unsafe(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == "unsafe_artifact", body
    return body


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_dotted_global_through_library_module_refused(
    client: TestClient, data: tuple[pd.DataFrame, Any], tmp_path: Path, library: str
) -> None:
    frame, _ = data
    marker = tmp_path / "pwned"
    payload = through_dotted_global(marker, BOOSTERS[library])
    body = assert_unsafe(register(client, "evil", payload, schema_of(frame), filename="m.pkl"))
    assert body["details"]["disallowed"] == [f"{BOOSTERS[library]}.os.system"]
    assert not marker.exists()


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
@pytest.mark.parametrize("target", ["booster", "wrapper"])
def test_build_on_allowed_class_refused(
    client: TestClient, data: tuple[pd.DataFrame, Any], library: str, target: str
) -> None:
    frame, _ = data
    module, name = (BOOSTERS[library], "Booster") if target == "booster" else WRAPPERS[library]
    cls = getattr(__import__(module, fromlist=[name]), name)
    before = cls.__dict__.get("__setstate__")
    body = assert_unsafe(
        register(client, "evil", build_on_class(module, name), schema_of(frame), filename="m.pkl")
    )
    assert body["details"]["disallowed"] == [f"{module}.{name}"]
    assert cls.__dict__.get("__setstate__") is before  # the class was not modified


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_other_library_globals_refused(
    client: TestClient, data: tuple[pd.DataFrame, Any], library: str
) -> None:
    frame, _ = data
    name = {
        "xgboost": ("xgboost.callback", "TrainingCheckPoint"),
        "lightgbm": ("lightgbm.basic", "Dataset"),
    }
    module, attr = name[library]
    payload = _frame(_stack_global(module, attr) + pickle.EMPTY_TUPLE + pickle.REDUCE)
    body = assert_unsafe(register(client, "evil", payload, schema_of(frame), filename="m.pkl"))
    assert body["details"]["disallowed"] == [f"{module}.{attr}"]


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_reduce_calling_a_booster_refused(
    client: TestClient,
    fitted: dict[str, Any],
    data: tuple[pd.DataFrame, Any],
    tmp_path: Path,
    library: str,
) -> None:
    frame, _ = data
    suffix = ".json" if library == "xgboost" else ".txt"
    path = tmp_path / f"server-side{suffix}"
    path.write_bytes(native_bytes(fitted[library], suffix, tmp_path))
    payload = reduce_booster(BOOSTERS[library], path)
    assert_unsafe(register(client, "evil", payload, schema_of(frame), filename="m.pkl"))


def test_pickle_the_installed_xgboost_cannot_read(
    client: TestClient, fitted: dict[str, Any], data: tuple[pd.DataFrame, Any]
) -> None:
    """An XGBoost 1.x pickle holds its Booster in the old binary format XGBoost 3 refuses:
    simulated by replacing the serialised Booster with bytes of the same length."""
    frame, _ = data
    model = fitted["xgboost"]
    content = pickle.dumps(model, protocol=5)
    raw = bytes(model.get_booster().__getstate__()["handle"])
    assert content.count(raw) == 1
    old = content.replace(raw, b"binf" + b"\x00" * (len(raw) - 4))
    response = register(client, "old", old, schema_of(frame), filename="model.pkl")
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_artifact"
    assert "save_model('model.json')" in body["message"]
    assert body["details"]["library"] == "xgboost"


@pytest.mark.parametrize(
    ("filename", "content"),
    [("model.json", b'{"learner": oops'), ("model.txt", b"tree\nversion=v4\n")],
)
def test_damaged_native_files(
    client: TestClient, data: tuple[pd.DataFrame, Any], filename: str, content: bytes
) -> None:
    frame, _ = data
    response = register(client, "broken", content, schema_of(frame), filename=filename)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_artifact"
    assert "re-save it with" in response.json()["message"]


def hide(monkeypatch: pytest.MonkeyPatch, library: str) -> None:
    """This process without ``library``: importing it fails, as on a server without it."""
    for name in [m for m in sys.modules if m == library or m.startswith(f"{library}.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, library, None)


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_without_the_library_registration_load_and_readyz_say_so(
    client: TestClient,
    make_client: Any,
    fitted: dict[str, Any],
    data: tuple[pd.DataFrame, Any],
    monkeypatch: pytest.MonkeyPatch,
    library: str,
) -> None:
    frame, _ = data
    content = DUMPS["joblib"](fitted[library])
    registered = register(client, "boosted", content, schema_of(frame), filename="m.joblib")
    assert registered.status_code == 201, registered.text
    assert "unloadable_versions" not in client.get("/readyz").json()
    hide(monkeypatch, library)

    with make_client() as without:  # a server started without the library
        refused = register(without, "boosted", content, schema_of(frame), filename="m.joblib")
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "library_missing"
        assert f"modelserve[{library}]" in refused.json()["message"]
        rows = {"instances": instances(frame, [0])}
        loading = without.post("/v1/models/boosted/predict", json=rows)
        assert loading.json()["code"] == "library_missing", loading.text
        assert loading.status_code == 422
        ready = without.get("/readyz").json()
    assert ready["unloadable_versions"] == [{"model": "boosted", "version": 1, "needs": [library]}]
