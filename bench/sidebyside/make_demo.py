"""Train the demo model exactly as `modelserve demo` does and save it for the other servers.

`modelserve demo` trains on scikit-learn's bundled iris data (written as a CSV with readable
column names) with modelserve's own training: a Pipeline of a ColumnTransformer (by column
name: imputation and scaling of the four numbers) and a LogisticRegression. A pipeline that
selects columns by name needs a pandas DataFrame, so every server must build one (the floor
by hand, MLServer from a V2 request with `content_type: pd`, modelserve from its schema).

Writes into OUT_DIR (default: bench/out/models):
  demo.joblib     the fitted pipeline (what modelserve would store as skops)
  demo.meta.json  feature names (schema order), one sample row, 100 rows (every third row of
                  the data, all three species, twice), and the trained input schema
                  (registered with the joblib, as training registers it)

Runs with modelserve installed (the modelserve venv): python make_demo.py [OUT_DIR]
"""

import json
import sys
import tempfile
from pathlib import Path

import joblib
import pandas as pd

from modelserve.cli.serve import demo_job, write_demo_csv
from modelserve.training.service import fit


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "out" / "models")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        job = demo_job(write_demo_csv(Path(tmp)))
        trained = fit(job)
        frame = pd.read_csv(job.data)
    schema = trained.input_schema.model_dump(mode="json", exclude_none=True)
    names = [feature["name"] for feature in schema["features"]]
    rows = frame[names].to_numpy(dtype="float64")
    joblib.dump(trained.estimator, out / "demo.joblib")
    meta = {
        "feature_names": names,
        "sample_row": rows[0].tolist(),
        # every third row from the start: all three species among the first 100
        "batch_rows": rows[::3][:50].tolist() * 2,
        "schema": schema,
    }
    (out / "demo.meta.json").write_text(json.dumps(meta, indent=1))
    print(f"demo: {type(trained.estimator[-1]).__name__} on {names} -> {out / 'demo.joblib'}")


if __name__ == "__main__":
    main()
