"""The book's flow on both databases: a heart-failure-like CSV -> ``modelserve train`` (columns,
params, search, a book-format schema of overrides) -> predict over v1 and V2: 0/1 booleans,
range warnings in the response, the log and /metrics, hard limits from the user's schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from factories import fit_iris, metric_samples, register, to_bytes
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from modelserve.cli.main import app
from modelserve.config import Settings

runner = CliRunner()
FLAGS = ["anaemia", "diabetes", "high_blood_pressure", "smoking"]


def heart_csv(path: Path, rows: int = 160, seed: int = 0) -> Path:
    """Like the book's heart-failure data: integer-valued clinical numbers, 0/1 flags, an id
    column to leave out, and a 0/1 outcome that depends on them."""
    rng = np.random.default_rng(seed)
    age = rng.integers(40, 96, rows)
    ejection = rng.integers(14, 81, rows)
    creatinine = rng.normal(1.4, 0.6, rows).clip(0.5, 9.4).round(2)
    flags = {name: rng.integers(0, 2, rows) for name in FLAGS}
    risk = (age - 60) / 10 - (ejection - 38) / 10 + (creatinine - 1.4) + flags["anaemia"]
    outcome = (risk + rng.normal(0, 1, rows) > 0).astype(int)
    frame = pd.DataFrame(
        {
            "patient_id": np.arange(rows),
            "age": age,
            "ejection_fraction": ejection,
            "serum_creatinine": creatinine,
            **flags,
            "time": rng.integers(4, 285, rows),
            "DEATH_EVENT": outcome,
        }
    )
    frame.to_csv(path, index=False)
    return path


def run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def book_schema(path: Path, columns: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"input_schema": {"columns": columns}}))
    return path


def patient(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "age": 65,
        "ejection_fraction": 38,
        "serum_creatinine": 1.1,
        "anaemia": 0,
        "diabetes": 1,
        "high_blood_pressure": True,
        "smoking": False,
    }
    return row | changes


@pytest.fixture
def heart_model(cli_env: Settings, tmp_path: Path) -> str:
    """``heart`` trained from the CLI: a search of 3 candidates, a fixed parameter, the id and
    time columns dropped, and a book-format schema whose ejection_fraction has hard limits."""
    csv = heart_csv(tmp_path / "heart.csv")
    overrides = book_schema(
        tmp_path / "overrides.json",
        [{"name": "ejection_fraction", "type": "numeric", "minimum": 0, "maximum": 100}],
    )
    return ok(
        "train",
        str(csv),
        "--target",
        "DEATH_EVENT",
        "--name",
        "heart",
        "--drop",
        "patient_id,time",
        "--param",
        "n_estimators=30",
        "--search",
        "3",
        "--folds",
        "3",
        "--schema",
        str(overrides),
        "--alias",
        "production",
    )


def test_train_prints_search_and_roc_auc(heart_model: str, client: TestClient) -> None:
    assert "best 3 of 3" in heart_model
    assert "roc_auc" in heart_model
    assert "random_forest: roc_auc=" in heart_model
    version = client.get("/v1/models/heart/versions/1").json()
    metrics = version["metrics"]
    assert metrics["search"] == {"candidates": 3, "ranked_by": "roc_auc"}
    assert metrics["params"]["n_estimators"] == 30  # fixed, never searched
    assert {"max_depth", "min_samples_leaf", "max_features"} <= set(metrics["params"])
    assert 0.5 < metrics["roc_auc"]["mean"] <= 1.0
    features = {f["name"]: f for f in version["input_schema"]["features"]}
    assert set(features) == {"age", "ejection_fraction", "serum_creatinine", *FLAGS}
    assert features["age"]["type"] == "number"
    assert features["anaemia"]["type"] == "boolean"
    ef = features["ejection_fraction"]
    assert (ef["minimum"], ef["maximum"]) == (0, 100)
    assert ef["observed"]["min"] >= 14
    assert ef["observed"]["max"] <= 80
    assert sum(features["smoking"]["observed"]["frequencies"].values()) == 160
    shown = ok("models", "show", "heart")
    assert "roc_auc=" in shown


def test_predictions_take_0_1_booleans_and_warn_outside_the_range(
    heart_model: str, client: TestClient
) -> None:
    rows = [patient(), patient(age=-5, smoking=1), patient(anaemia=True, ejection_fraction=90)]
    response = client.post("/v1/models/heart/predict", json={"instances": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["predictions"]) == 3
    assert [(w["row"], w["feature"]) for w in body["warnings"]] == [
        (1, "age"),
        (2, "ejection_fraction"),
    ]
    assert "-5 is below the smallest value seen in training" in body["warnings"][0]["message"]
    clean = client.post("/v1/models/heart/predict", json={"instances": [patient()]}).json()
    assert "warnings" not in clean

    logged = client.get("/v1/predictions", params={"model": "heart"}).json()["data"]
    warned = [r for r in logged if r["outputs"].get("warnings")]
    assert [w["feature"] for w in warned[0]["outputs"]["warnings"]] == [
        "age",
        "ejection_fraction",
    ]
    samples = metric_samples(client)
    counted = {
        dict(labels)["feature"]: value
        for (name, labels), value in samples.items()
        if name == "modelserve_input_warnings_total" and dict(labels)["model"] == "heart"
    }
    assert counted == {"age": 1.0, "ejection_fraction": 1.0}


def test_strings_and_hard_limits_are_refused(heart_model: str, client: TestClient) -> None:
    for row, feature in (
        (patient(smoking="0"), "smoking"),
        (patient(ejection_fraction=250), "ejection_fraction"),
    ):
        response = client.post("/v1/models/heart/predict", json={"instances": [row]})
        assert response.status_code == 422, response.text
        assert [p["feature"] for p in response.json()["details"]] == [feature]


def test_v2_takes_0_1_booleans_and_returns_warnings(heart_model: str, client: TestClient) -> None:
    rows = [patient(anaemia=0, diabetes=1), patient(age=120, anaemia=1, diabetes=0)]
    inputs = []
    for name in ("age", "ejection_fraction", "serum_creatinine", *FLAGS):
        values = [int(r[name]) if isinstance(r[name], bool) else r[name] for r in rows]
        datatype = "INT64" if name in FLAGS else "FP64"
        inputs.append({"name": name, "shape": [2], "datatype": datatype, "data": values})
    response = client.post("/v2/models/heart/infer", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(w["row"], w["feature"]) for w in body["parameters"]["warnings"]] == [(1, "age")]
    v1 = client.post("/v1/models/heart/predict", json={"instances": rows}).json()
    [label] = [o for o in body["outputs"] if o["name"] == "predict"]
    assert label["data"] == v1["predictions"]


def test_linear_on_a_classification_target_says_logistic(cli_env: Settings, tmp_path: Path) -> None:
    csv = heart_csv(tmp_path / "heart.csv", rows=40)
    result = run(
        "train", str(csv), "--target", "DEATH_EVENT", "--name", "h", "--algorithm", "linear"
    )
    assert result.exit_code != 0
    assert "use 'logistic'" in result.output


def test_unknown_param_lists_the_valid_ones(cli_env: Settings, tmp_path: Path) -> None:
    csv = heart_csv(tmp_path / "heart.csv", rows=40)
    result = run("train", str(csv), "--target", "DEATH_EVENT", "--name", "h", "--param", "depth=3")
    assert result.exit_code != 0
    assert "depth" in result.output
    assert "max_depth" in result.output


def test_register_takes_the_book_schema(
    cli_env: Settings, client: TestClient, tmp_path: Path
) -> None:
    model = tmp_path / "iris.joblib"
    model.write_bytes(to_bytes(fit_iris(), "joblib"))
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    schema = book_schema(
        tmp_path / "input_schema.json", [{"name": n, "type": "numeric"} for n in names]
    )
    ok("models", "register", str(model), "--name", "book-iris", "--schema", str(schema))
    version = client.get("/v1/models/book-iris/versions/1").json()
    assert [f["type"] for f in version["input_schema"]["features"]] == ["number"] * 4
    instance = dict(zip(names, [5.1, 3.5, 1.4, 0.2], strict=True))
    response = client.post("/v1/models/book-iris/predict", json={"instances": [instance]})
    assert response.status_code == 200, response.text
    book = json.loads(schema.read_text())["input_schema"]
    over_http = register(client, "book-iris-http", model.read_bytes(), book)
    assert over_http.status_code == 201, over_http.text


@pytest.mark.parametrize("algorithm", ["xgboost", "lightgbm"])
def test_boosted_training_registers_and_serves(
    algorithm: str, cli_env: Settings, client: TestClient, tmp_path: Path
) -> None:
    """``--algorithm xgboost|lightgbm`` saves a skops pipeline whose booster classes the
    restricted loaders admit: it registers, serves, and answers as the CLI's own model."""
    csv = heart_csv(tmp_path / "heart.csv")
    printed = ok(
        "train",
        str(csv),
        "--target",
        "DEATH_EVENT",
        "--name",
        "boosted",
        "--drop",
        "patient_id,time",
        "--algorithm",
        algorithm,
        "--param",
        "n_estimators=15",
        "--folds",
        "3",
    )
    assert f"{algorithm}: roc_auc=" in printed
    version = client.get("/v1/models/boosted/versions/1").json()
    assert version["format"] == "skops"
    rows = [patient(), patient(age=90, ejection_fraction=20, anaemia=1)]
    response = client.post("/v1/models/boosted/predict", json={"instances": rows})
    assert response.status_code == 200, response.text
    probabilities = response.json()["probabilities"]
    assert len(probabilities) == 2
    assert all(abs(sum(p.values()) - 1) < 1e-6 for p in probabilities)
