"""scikit-learn vs ONNX Runtime for the same model, in process: what registration spends making
the twin, and single-row and 100-row predict latency of each runtime.

Run: ``python bench/onnx_runtime.py [--repeat 300]``. Times the server's own predictors
(``Predictor`` and ``OnnxPredictor``) on validated batches, so it measures the model call the
runtime setting changes, without HTTP, validation or the prediction log. Not run in CI.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from modelserve.inference.onnx_predictor import OnnxPredictor, open_session
from modelserve.inference.predictor import Predictor
from modelserve.inference.validation import CompiledValidator
from modelserve.registry.onnx import attempt_twin
from modelserve.registry.probe import describe_output, sample_instances
from modelserve.registry.schemas import InputSchema
from modelserve.training.pipeline import train

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_models() -> list[tuple[str, Any, InputSchema]]:
    x, y = load_iris(return_X_y=True)
    schema = InputSchema.model_validate(
        {"features": [{"name": n, "type": "number", "minimum": 0} for n in IRIS]}
    )
    return [
        ("iris logistic", LogisticRegression(max_iter=500).fit(x, y), schema),
        ("iris hist-gb", HistGradientBoostingClassifier(random_state=0).fit(x, y), schema),
    ]


def churn_models() -> list[tuple[str, Any, InputSchema]]:
    rng = np.random.default_rng(0)
    rows = 2000
    frame = pd.DataFrame(
        {
            "income": rng.normal(50_000, 15_000, rows).round(2),
            "age": rng.integers(18, 80, rows),
            "member": rng.integers(0, 2, rows),
            "region": rng.choice(["north", "south", "east"], rows),
        }
    )
    score = frame["income"] / 20_000 + frame["member"] * 1.5 - frame["age"] / 40
    frame["churn"] = np.where(score > score.median(), "yes", "no")
    frame.loc[::17, "income"] = np.nan
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "churn.csv"
        frame.to_csv(path, index=False)
        data = pd.read_csv(path)
    found = []
    for algorithm in ("linear", "gradient_boosting", "random_forest"):
        trained = train(data, "churn", algorithm=algorithm, folds=2)  # type: ignore[arg-type]
        found.append((f"churn {algorithm}", trained.estimator, trained.input_schema))
    return found


def per_call_ms(call: Callable[[], object], repeat: int) -> float:
    call()
    times = timeit.repeat(call, number=1, repeat=repeat)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    print(
        f"{'model':<24} {'twin':>24} {'1 row sklearn':>14} {'1 row onnx':>11} "
        f"{'100 rows sklearn':>17} {'100 rows onnx':>14}"
    )
    for name, estimator, schema in iris_models() + churn_models():
        output = describe_output(estimator, schema)
        started = time.perf_counter()
        attempt = attempt_twin(estimator, schema, output)
        made = (time.perf_counter() - started) * 1000
        if attempt.twin is None:
            print(f"{name:<24} {'none':>24}  ({attempt.reason})")
            continue
        twin = f"{attempt.twin.precision} {made:.0f} ms"
        sklearn = Predictor(estimator, schema, output)
        onnx = OnnxPredictor(open_session(attempt.twin.content), schema, output)
        validator = CompiledValidator(schema, max_rows=1000)
        rows = sample_instances(schema, 100, seed=1)
        one = validator.validate({"instances": rows[2:3]})
        hundred = validator.validate({"instances": rows})
        timings = [
            per_call_ms(lambda p=predictor, b=batch: p.predict(b), args.repeat)  # type: ignore[misc]
            for batch in (one, hundred)
            for predictor in (sklearn, onnx)
        ]
        print(
            f"{name:<24} {twin:>24} {timings[0]:>11.3f} ms {timings[1]:>8.3f} ms "
            f"{timings[2]:>14.3f} ms {timings[3]:>11.3f} ms"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
