"""Small real-object factories: data sets, fitted models, artifacts, registrations."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import orjson
import pandas as pd
import skops.io
from fastapi.testclient import TestClient
from httpx import Response
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modelserve.audit.service import CLI_ACTOR
from modelserve.auth.keys import ApiKeyService
from modelserve.auth.schemas import ApiKeyCreate
from modelserve.core.db import Database
from modelserve.users.models import Role
from modelserve.users.schemas import UserCreate
from modelserve.users.service import UserService

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_frame() -> pd.DataFrame:
    """Iris with readable names and string species labels."""
    iris = load_iris(as_frame=True)
    frame = iris.data.copy()
    frame.columns = IRIS_FEATURES
    frame["species"] = [str(iris.target_names[i]) for i in iris.target]
    return frame


def iris_schema(**overrides: Any) -> dict[str, Any]:
    """Input schema of the iris features (all numbers, non-negative)."""
    features = [{"name": n, "type": "number", "minimum": 0.0, **overrides} for n in IRIS_FEATURES]
    return {"features": features}


def fit_iris() -> LogisticRegression:
    """A logistic regression fitted on the iris matrix (no feature names)."""
    frame = iris_frame()
    return LogisticRegression(max_iter=500).fit(frame[IRIS_FEATURES].to_numpy(), frame["species"])


def to_bytes(estimator: Any, fmt: str) -> bytes:
    """Serialise an estimator as skops, joblib or pickle."""
    if fmt == "skops":
        return bytes(skops.io.dumps(estimator))
    if fmt == "joblib":
        buffer = io.BytesIO()
        joblib.dump(estimator, buffer, compress=3)
        return buffer.getvalue()
    return pickle.dumps(estimator, protocol=5)


def register(
    client: TestClient,
    name: str,
    data: bytes,
    schema: dict[str, Any],
    filename: str = "model.bin",
    **meta: Any,
) -> Response:
    """POST /v1/models with an artifact and metadata."""
    metadata = orjson.dumps({"name": name, "input_schema": schema, **meta}).decode()
    return client.post(
        "/v1/models",
        files={"file": (filename, data, "application/octet-stream")},
        data={"metadata": metadata},
    )


def register_iris(client: TestClient, name: str = "iris", fmt: str = "skops", **meta: Any) -> Any:
    """Register the iris model and return the version JSON."""
    response = register(
        client, name, to_bytes(fit_iris(), fmt), iris_schema(), filename=f"iris.{fmt}", **meta
    )
    assert response.status_code == 201, response.text
    return response.json()


def iris_instance(row: int = 0) -> dict[str, float]:
    """One iris row as an instance."""
    values = iris_frame().iloc[row]
    return {name: float(values[name]) for name in IRIS_FEATURES}


def mixed_csv(path: Path, rows: int = 240, seed: int = 0) -> Path:
    """A CSV with numbers, integers, 0/1 booleans, a category, missing values and a label that
    depends on them."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50_000, 15_000, rows).round(2)
    age = rng.integers(18, 80, rows)
    member = rng.integers(0, 2, rows)
    region = rng.choice(["north", "south", "east"], rows)
    score = (income / 20_000) + member * 1.5 + (region == "south") * 1.0 - age / 40
    label = np.where(score > np.median(score), "yes", "no")
    frame = pd.DataFrame(
        {"income": income, "age": age, "member": member, "region": region, "churn": label}
    )
    frame.loc[::17, "income"] = np.nan
    frame.to_csv(path, index=False)
    return path


PASSWORD = "correct horse battery"


def create_user(
    db: Database,
    username: str,
    role: Role = Role.USER,
    *,
    password: str = PASSWORD,
    enabled: bool = True,
) -> int:
    """A user straight in the database; returns its id."""
    data = UserCreate(username=username, password=password, role=role, enabled=enabled)
    with db.transaction() as session:
        return UserService(session).create(data, CLI_ACTOR).id


def create_key(db: Database, user_id: int, **options: Any) -> str:
    """An API key for a user; returns the secret."""
    with db.transaction() as session:
        created = ApiKeyService(session).create(
            ApiKeyCreate(name=options.pop("name", "test"), **options), user_id, CLI_ACTOR
        )
    return created.key


def metric_samples(
    client: TestClient | httpx.Client,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of GET /metrics, by (sample name, sorted labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): float(sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def unlabelled_metrics(client: TestClient | httpx.Client) -> dict[str, float]:
    """The samples of GET /metrics that carry no labels, by name."""
    return {name: value for (name, labels), value in metric_samples(client).items() if not labels}


def bytes_tensor(blob: bytes) -> list[str]:
    """The strings of a binary BYTES tensor: each a 4-byte little-endian length, then UTF-8."""
    values, offset = [], 0
    while offset < len(blob):
        (length,) = struct.unpack_from("<I", blob, offset)
        values.append(blob[offset + 4 : offset + 4 + length].decode())
        offset += 4 + length
    return values
