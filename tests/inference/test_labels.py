"""Labels served for classifiers equal the estimator's own ``predict``, row for row.

Forests, histogram gradient boosting and logistic regression get their labels from the
probabilities the server already computed (one pass through the model, not two); this checks
that shortcut (and its fallback at rounding ties), and the
ordinary path for other classifiers, against scikit-learn on rows near the decision boundaries.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from factories import register, to_bytes
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _dataset(name: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    loader = load_wine if name == "wine" else load_breast_cancer
    data = loader()
    labels = np.array([f"class-{int(t)}" for t in data.target])
    return np.asarray(data.data, dtype=float), labels


ESTIMATORS = {
    "forest": lambda: RandomForestClassifier(n_estimators=15, max_depth=3, random_state=0),
    "extra-trees": lambda: ExtraTreesClassifier(n_estimators=15, max_depth=3, random_state=0),
    "hgb": lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0),
    "scaled-logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
}


@pytest.mark.parametrize("dataset", ["wine", "breast-cancer"])
@pytest.mark.parametrize("kind", sorted(ESTIMATORS))
def test_labels_equal_estimator_predict(client: TestClient, kind: str, dataset: str) -> None:
    features, labels = _dataset(dataset)
    estimator = ESTIMATORS[kind]().fit(features, labels)
    names = [f"f{i}" for i in range(features.shape[1])]
    schema = {"features": [{"name": n, "type": "number"} for n in names]}
    response = register(client, "m", to_bytes(estimator, "skops"), schema)
    assert response.status_code == 201, response.text
    # Training rows plus jittered copies, so some sit where the classes' probabilities are close.
    rng = np.random.default_rng(7)
    jittered = features + rng.normal(0, features.std(axis=0) / 3, features.shape)
    rows = np.vstack([features, jittered])[:1000]  # the default per-request row limit
    body = {"columns": names, "data": rows.tolist()}
    response = client.post("/v1/models/m/predict", json=body)
    assert response.status_code == 200, response.text
    served = response.json()
    assert served["predictions"] == estimator.predict(rows).tolist()
    expected = estimator.predict_proba(rows)
    order = [str(c) for c in estimator.classes_]
    got = np.array([[p[c] for c in order] for p in served["probabilities"]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_logistic_labels_at_the_decision_boundary_are_predicts(client: TestClient) -> None:
    # Logistic regression labels come from its probabilities, except where the top two are
    # within rounding of each other: there argmax(predict_proba) and predict can disagree
    # (scores of +-1e-15 both give [0.5, 0.5]), and the served label must be predict's.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 1))
    y = np.where(x[:, 0] + rng.normal(0, 0.5, 200) > 0.3, "yes", "no")
    estimator = LogisticRegression().fit(x, y)
    boundary = -estimator.intercept_[0] / estimator.coef_[0, 0]
    rows = (boundary + np.arange(-60, 61) * np.spacing(boundary)).reshape(-1, 1)
    rows = np.vstack([rows, rng.normal(size=(100, 1))])
    by_proba = estimator.classes_[estimator.predict_proba(rows).argmax(axis=1)]
    assert (by_proba != estimator.predict(rows)).any(), "the rows include a rounding tie"
    schema = {"features": [{"name": "x", "type": "number"}]}
    assert register(client, "m", to_bytes(estimator, "skops"), schema).status_code == 201
    response = client.post("/v1/models/m/predict", json={"columns": ["x"], "data": rows.tolist()})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == estimator.predict(rows).tolist()
