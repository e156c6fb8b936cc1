"""Registering without a schema builds a numeric one from the model file's feature names (and
says so); with neither, a clear error. XGBoost and LightGBM files through the CLI too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from factories import register
from fastapi.testclient import TestClient
from format_models import DUMPS, instances, native_bytes, schema_of
from typer.testing import CliRunner

from modelserve.cli.main import app
from modelserve.config import Settings

runner = CliRunner()


@pytest.mark.parametrize(
    ("key", "form", "filename"),
    [
        ("xgboost", "joblib", "m.joblib"),
        ("lightgbm", "skops", "m.skops"),
        ("xgboost-pipeline", "pickle", "m.pkl"),
        ("xgboost", "native", "m.ubj"),
        ("lightgbm", "native", "m.txt"),
    ],
)
def test_schema_from_feature_names(
    client: TestClient,
    fitted: dict[str, Any],
    data: tuple[pd.DataFrame, Any],
    tmp_path: Path,
    key: str,
    form: str,
    filename: str,
) -> None:
    frame, _ = data
    model = fitted[key]
    if form == "native":
        content = native_bytes(model, Path(filename).suffix, tmp_path)
    else:
        content = DUMPS[form](model)
    response = register(client, "named", content, None, filename=filename)  # type: ignore[arg-type]
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["input_schema_source"] == "feature_names"
    assert version["input_schema"] == schema_of(frame) | {
        "features": [
            {
                **f,
                "nullable": False,
                "minimum": None,
                "maximum": None,
                "categories": None,
                "description": "",
                "observed": None,
            }
            for f in schema_of(frame)["features"]
        ]
    }
    answer = client.post("/v1/models/named/predict", json={"instances": instances(frame, [0, 1])})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == model.predict(frame.iloc[[0, 1]]).tolist()


def test_no_schema_and_no_feature_names_is_a_clear_error(
    client: TestClient, data: tuple[pd.DataFrame, Any]
) -> None:
    import xgboost

    frame, target = data
    unnamed = xgboost.XGBClassifier(n_estimators=2).fit(frame.to_numpy(), target)
    response = register(client, "unnamed", DUMPS["joblib"](unnamed), None, filename="m.joblib")  # type: ignore[arg-type]
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert "does not name its features" in body["message"]
    assert client.get("/v1/models/unnamed").status_code == 404


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_cli_registers_native_and_pickled_files(
    cli_env: Settings,
    client: TestClient,
    fitted: dict[str, Any],
    data: tuple[pd.DataFrame, Any],
    tmp_path: Path,
) -> None:
    frame, _ = data
    booster = tmp_path / "cancer.json"
    booster.write_bytes(native_bytes(fitted["xgboost"], ".json", tmp_path))
    output = invoke("models", "register", str(booster), "--name", "cancer")
    assert "schema: built from the model's 30 feature names, all numeric" in output
    assert "cancer v1 (xgboost, classification" in output
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(schema_of(frame)))
    pickled = tmp_path / "cancer.joblib"
    pickled.write_bytes(DUMPS["joblib"](fitted["lightgbm-pipeline"]))
    output = invoke("models", "register", str(pickled), "--name", "cancer", "--schema", str(schema))
    assert "cancer v2 (joblib, classification" in output
    assert "schema: built" not in output
    assert "onnx twin: kept" in output
    for number, key in ((1, "xgboost"), (2, "lightgbm-pipeline")):
        answer = client.post(
            f"/v1/models/cancer/versions/{number}/predict",
            json={"instances": instances(frame, [0, 7])},
        )
        assert answer.status_code == 200, answer.text
        got = [[p["0"], p["1"]] for p in answer.json()["probabilities"]]
        np.testing.assert_array_equal(got, fitted[key].predict_proba(frame.iloc[[0, 7]]))
    unnamed = tmp_path / "unnamed.txt"
    unnamed.write_bytes(b"not a model")
    result = runner.invoke(app, ["models", "register", str(unnamed), "--name", "x"])
    assert result.exit_code == 1
    assert "invalid_artifact" in result.output
