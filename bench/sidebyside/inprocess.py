"""In-process limit: time model.predict_proba directly, no HTTP, no JSON.

For each model (and the demo model, when make_demo.py has made it): per-call timings for 1-row, 100-row and 1000-row numpy inputs
(the rows are the dataset's, tiled to 1000). Prints one JSON object:
  {model: {rows: {"calls": n, "p50_ms":..., "p99_ms":..., "calls_per_s": 1/mean, "rows_per_s":...}}}

Run it pinned like the servers:  taskset -c 1 python inprocess.py MODELS_DIR
"""

import json
import sys
import time
from pathlib import Path

import joblib
import numpy as np

# (rows per call, minimum calls, minimum seconds): repeat until both minimums are met
PLAN = [(1, 3000, 2.0), (100, 1000, 2.0), (1000, 200, 2.0)]


def time_calls(fn, X, min_calls: int, min_seconds: float) -> np.ndarray:
    for _ in range(50):  # warm-up
        fn(X)
    times = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn(X)
        times.append(time.perf_counter() - t0)
    return np.array(times)


def main() -> None:
    models_dir = Path(sys.argv[1])
    meta = json.loads((models_dir / "meta.json").read_text())
    base = np.array(meta["batch_rows"], dtype=np.float64)  # 100 x 30
    inputs = {
        1: np.array([meta["sample_row"]], dtype=np.float64),
        100: base,
        1000: np.tile(base, (10, 1)),
    }

    plans = {"logreg": inputs, "hgb": inputs}
    demo = models_dir / "demo.meta.json"
    if demo.exists():  # the demo pipeline takes a DataFrame (see make_demo.py)
        import pandas as pd

        meta = json.loads(demo.read_text())
        frame = pd.DataFrame(meta["batch_rows"], columns=meta["feature_names"], dtype=np.float64)
        plans["demo"] = {1: frame.iloc[:1], 100: frame, 1000: pd.concat([frame] * 10)}
    result = {}
    for name, model_inputs in plans.items():
        model = joblib.load(models_dir / f"{name}.joblib")
        result[name] = {}
        for rows, min_calls, min_s in PLAN:
            t = time_calls(model.predict_proba, model_inputs[rows], min_calls, min_s)
            result[name][str(rows)] = {
                "calls": int(t.size),
                "p50_ms": float(np.median(t) * 1e3),
                "p99_ms": float(np.percentile(t, 99) * 1e3),
                "calls_per_s": float(1.0 / t.mean()),
                "rows_per_s": float(rows / t.mean()),
            }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
