"""Models and what is sent to them: the estimators a scenario serves (the same ones here, to
check the server's answers against), registering them, request bodies, and the checks that the
answers match."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
from harness import ScenarioError, Unsupported

BATCH_ROWS = 100
TOLERANCE = 1e-6
ONNX_TOLERANCE = 1e-5
V1_PREDICT = "/v1/models/{}/predict"


# --------------------------------------------------------------------------------------------
# Models


@dataclass
class Case:
    """A registered model, the same estimator here, and rows to send it."""

    name: str
    estimator: Any
    features: list[str]
    rows: np.ndarray[Any, Any]
    frame: bool
    """The estimator takes a DataFrame (fitted on one) rather than a matrix."""

    @property
    def classes(self) -> list[Any]:
        return list(self.estimator.classes_)

    def model_input(self, idx: list[int]) -> Any:
        if self.frame:
            return pd.DataFrame(self.rows[idx], columns=self.features)
        return self.rows[idx]

    def instances(self, idx: list[int]) -> list[dict[str, float]]:
        return [dict(zip(self.features, self.rows[i].tolist(), strict=True)) for i in idx]

    def body(self, idx: list[int], form: str = "instances") -> bytes:
        if form == "columnar":
            data = {"columns": self.features, "data": self.rows[idx].tolist()}
            return orjson.dumps(data)
        return orjson.dumps({"instances": self.instances(idx)})

    def expected(self, idx: list[int]) -> tuple[list[Any], np.ndarray[Any, Any]]:
        x = self.model_input(idx)
        return list(self.estimator.predict(x)), np.asarray(self.estimator.predict_proba(x))


def iris_rows() -> np.ndarray[Any, Any]:
    from sklearn.datasets import load_iris

    return np.asarray(load_iris().data, dtype=float)


def train_hgb(iterations: int = 300) -> tuple[Any, list[str], np.ndarray[Any, Any]]:
    """A HistGradientBoosting classifier on scikit-learn's bundled breast cancer data.

    300 boosting iterations by default: about 2.5 ms per ``predict_proba`` call on the benchmark
    machine, nearly all of it per call (64 rows take 3.4 ms), which is the case adaptive batching
    is for. At 100 iterations (1 ms a call) the server's own per-request work (HTTP, auth,
    validation, logging: about 1.7 ms) is the larger part and batching gains less
    (``--hgb-iterations 100``)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier

    data = load_breast_cancer()
    x = np.asarray(data.data, dtype=float)
    features = [str(n).replace(" ", "_") for n in data.feature_names]
    estimator = HistGradientBoostingClassifier(max_iter=iterations, random_state=0)
    estimator.fit(x, data.target)
    return estimator, features, x


def register_direct(database_url: str, name: str, estimator: Any, features: list[str]) -> None:
    """Register the estimator (skops, an all-number schema) through the registry's Python API,
    before any server starts on the database."""
    import skops.io

    import modelserve.models  # noqa: F401  # every table, for the foreign keys
    from modelserve.core.db import Database
    from modelserve.registry.schemas import RegistrationMetadata
    from modelserve.registry.service import RegistryService

    schema = {"features": [{"name": f, "type": "number"} for f in features]}
    meta = RegistrationMetadata.model_validate({"name": name, "input_schema": schema})
    db = Database(database_url, pool_size=1)
    try:
        with db.transaction() as session:
            RegistryService(session).register(skops.io.dumps(estimator), meta)
    finally:
        db.dispose()


def register_model(client: httpx.Client, name: str, estimator: Any, features: list[str]) -> None:
    """POST /v1/models: the estimator as skops with an all-number schema."""
    import skops.io

    schema = {"features": [{"name": f, "type": "number"} for f in features]}
    metadata = orjson.dumps({"name": name, "input_schema": schema}).decode()
    response = client.post(
        "/v1/models",
        files={"file": (f"{name}.skops", skops.io.dumps(estimator), "application/octet-stream")},
        data={"metadata": metadata},
    )
    if response.status_code != 201:
        raise ScenarioError(f"registering {name}: {response.status_code} {response.text[:500]}")


# --------------------------------------------------------------------------------------------
# Answers, request bodies and serving settings


def compare(
    case: Case, idx: list[int], labels: list[Any] | None, probs: list[Any], tol: float, what: str
) -> None:
    """Raise ScenarioError unless the answers match the local estimator's."""
    want_labels, want_proba = case.expected(idx)
    if len(probs) != len(idx) or (labels is not None and len(labels) != len(idx)):
        raise ScenarioError(f"{what}: {len(probs)} answers for {len(idx)} rows")
    for n, row in enumerate(idx):
        if labels is not None and str(labels[n]) != str(want_labels[n]):
            raise ScenarioError(
                f"{what}: wrong label for row {row}: {labels[n]!r}, expected {want_labels[n]!r}"
            )
        got = probs[n]
        if isinstance(got, dict):
            got = [got.get(str(c), float("nan")) for c in case.classes]
        diff = np.abs(np.asarray(got, dtype=float) - want_proba[n])
        if not np.all(diff <= tol):
            raise ScenarioError(
                f"{what}: probabilities for row {row} are {got}, expected "
                f"{want_proba[n].tolist()} (max difference {np.nanmax(diff):.3g} > {tol:g})"
            )


def verify_modelserve(
    client: httpx.Client,
    path: str,
    case: Case,
    batches: list[list[int]],
    *,
    form: str = "instances",
    tol: float = TOLERANCE,
    what: str,
) -> None:
    """Send each batch and compare with local predictions. Unsupported on a 422 for the
    columnar form (the server does not know it yet)."""
    for idx in batches:
        response = client.post(
            path, content=case.body(idx, form), headers={"content-type": "application/json"}
        )
        if response.status_code == 422 and form == "columnar":
            raise Unsupported(f"columnar form answered 422: {response.text[:200]}")
        if response.status_code != 200:
            raise ScenarioError(f"{what}: {response.status_code} {response.text[:500]}")
        body = response.json()
        compare(case, idx, body.get("predictions"), body.get("probabilities") or [], tol, what)


def verify_floor(client: httpx.Client, case: Case, rows: list[int]) -> None:
    for row in rows:
        response = client.post("/predict", json=case.rows[row].tolist())
        if response.status_code != 200:
            raise ScenarioError(f"floor: {response.status_code} {response.text[:300]}")
        compare(case, [row], None, [response.json()], TOLERANCE, "floor")


def spread(n: int, count: int, seed: int) -> list[int]:
    """``count`` row indices out of ``n``, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.integers(0, n, count)]


def single_bodies(case: Case) -> list[bytes]:
    return [case.body([i]) for i in spread(len(case.rows), 64, seed=1)]


def batches(case: Case, count: int = 8) -> list[list[int]]:
    return [spread(len(case.rows), BATCH_ROWS, seed=100 + k) for k in range(count)]


def floor_bodies(case: Case) -> list[bytes]:
    return [orjson.dumps(case.rows[i].tolist()) for i in spread(len(case.rows), 64, seed=1)]


def put_serving(client: httpx.Client, model: str, settings: dict[str, Any]) -> None:
    """Set a model's serving settings; ScenarioError if refused."""
    response = client.put(f"/v1/models/{model}/serving", json=settings)
    if response.status_code == 422:
        raise Unsupported(f"PUT serving {settings}: 422 {response.text[:300]}")
    if response.status_code != 200:
        raise ScenarioError(f"PUT serving {settings}: {response.status_code} {response.text}")
    time.sleep(0.3)  # other processes follow within REGISTRY_POLL_SECONDS
