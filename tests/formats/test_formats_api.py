"""XGBoost and LightGBM models in every file form, registered over HTTP and served on v1 and
V2 with the answers the library itself gives in process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from factories import register
from fastapi.testclient import TestClient
from format_models import DUMPS, instances, native_bytes, schema_of

ROWS = [0, 1, 19, 200, 568]

# (model fixture key, file form, filename)
FORMS = [
    *[(m, form, f"model.{form}") for m in ("xgboost", "lightgbm") for form in DUMPS],
    *[(f"{m}-pipeline", form, f"model.{form}") for m in ("xgboost", "lightgbm") for form in DUMPS],
    ("xgboost", "native", "model.json"),
    ("xgboost", "native", "model.ubj"),
    ("xgboost", "booster", "model.json"),
    ("lightgbm", "native", "model.txt"),
]


def artifact(model: Any, form: str, filename: str, tmp: Path) -> bytes:
    if form in DUMPS:
        return DUMPS[form](model)
    if form == "booster":
        return native_bytes(model.get_booster(), Path(filename).suffix, tmp)
    return native_bytes(model, Path(filename).suffix, tmp)


def v2_body(frame: pd.DataFrame, rows: list[int]) -> dict[str, Any]:
    matrix = frame.iloc[rows].to_numpy(dtype=float)
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(matrix.shape),
                "datatype": "FP64",
                "data": matrix.tolist(),
            }
        ]
    }


@pytest.mark.parametrize(
    ("key", "form", "filename"), FORMS, ids=[f"{k}-{f}-{n}" for k, f, n in FORMS]
)
def test_registered_and_served_as_the_library_answers(
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
    content = artifact(model, form, filename, tmp_path)
    response = register(client, "tabular", content, schema_of(frame), filename=filename)
    assert response.status_code == 201, response.text
    version = response.json()
    library = key.split("-", maxsplit=1)[0]
    assert version["environment"][library]
    expected_format = form if form in DUMPS else library
    assert version["format"] == expected_format
    assert version["output"] == {"task": "classification", "classes": [0, 1], "probabilities": True}
    want = model.predict_proba(frame.iloc[ROWS])
    labels = model.predict(frame.iloc[ROWS]).tolist()

    v1 = client.post("/v1/models/tabular/predict", json={"instances": instances(frame, ROWS)})
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"] == labels
    got = [[p["0"], p["1"]] for p in v1.json()["probabilities"]]
    np.testing.assert_array_equal(np.array(got), want.astype(np.float64))

    v2 = client.post("/v2/models/tabular/infer", json=v2_body(frame, ROWS))
    assert v2.status_code == 200, v2.text
    predict, proba = v2.json()["outputs"]
    assert predict["data"] == labels
    np.testing.assert_array_equal(np.array(proba["data"]).reshape(-1, 2), want)
    [row] = client.get("/v1/predictions", params={"limit": 1}).json()["data"]
    assert (row["protocol"], row["status"], row["n_rows"]) == ("v2", "ok", len(ROWS))


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_regressors_native_and_pickled(
    client: TestClient,
    fitted: dict[str, Any],
    data: tuple[pd.DataFrame, Any],
    tmp_path: Path,
    library: str,
) -> None:
    frame, _ = data
    model = fitted[f"{library}-regressor"]
    native = ".json" if library == "xgboost" else ".txt"
    for name, content in (
        ("model.joblib", DUMPS["joblib"](model)),
        (f"model{native}", native_bytes(model, native, tmp_path)),
    ):
        response = register(client, "reg", content, schema_of(frame), filename=name)
        assert response.status_code == 201, response.text
        assert response.json()["output"]["task"] == "regression"
        number = response.json()["version"]
        answer = client.post(
            f"/v1/models/reg/versions/{number}/predict",
            json={"instances": instances(frame, ROWS)},
        )
        assert answer.status_code == 200, answer.text
        want = model.predict(frame.iloc[ROWS]).astype(np.float64)
        np.testing.assert_allclose(answer.json()["predictions"], want, rtol=1e-6)
