"""Train the two benchmark models deterministically and save them with joblib.

Data: sklearn's bundled breast-cancer set (569 rows x 30 float features, no download).

Writes into OUT_DIR (default: bench/out/models):
  logreg.joblib  Pipeline(StandardScaler, LogisticRegression(max_iter=1000))
  hgb.joblib     HistGradientBoostingClassifier(max_iter=100, random_state=0)
  meta.json      feature names, one sample row, and the first 100 rows (batch body)

Usage: python make_models.py [OUT_DIR]
"""

import json
import sys
from pathlib import Path

import joblib
import sklearn
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "out" / "models")
    out.mkdir(parents=True, exist_ok=True)

    data = load_breast_cancer()
    X, y = data.data, data.target  # float64, shape (569, 30)

    models = {
        "logreg": Pipeline(
            [("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))]
        ),
        "hgb": HistGradientBoostingClassifier(max_iter=100, random_state=0),
    }
    for name, model in models.items():
        model.fit(X, y)
        joblib.dump(model, out / f"{name}.joblib")
        print(f"{name}: train accuracy {model.score(X, y):.4f} -> {out / (name + '.joblib')}")

    meta = {
        "sklearn_version": sklearn.__version__,
        "feature_names": [str(f) for f in data.feature_names],
        "sample_row": X[0].tolist(),
        "batch_rows": X[:100].tolist(),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(f"meta -> {out / 'meta.json'}")


if __name__ == "__main__":
    main()
