"""XGBoost and LightGBM classifiers (200 trees, breast cancer) on modelserve against the floor
serving the same model with the library's own ``predict_proba``. Not run in CI.

Run: ``python bench/formats.py [--duration 5] [--connections 16]``.

For each library: the classifier is registered as a joblib file (an ``XGBClassifier`` /
``LGBMClassifier`` fitted on a DataFrame); modelserve (authentication, validation and the
prediction log on, one worker, SQLite) runs pinned to CPU 0, the load generator
(``bench/load.py``) to CPU 1, and ``bench/floor.py`` serves the same file. Scenarios:

* single-row requests over ``--connections`` connections: modelserve on its default runtime
  (the library's own predictor), modelserve on the model's verified ONNX twin, and the floor;
* 100-row requests (``--connections 4``), rows/s, against ``predict_proba`` on the same
  100-row DataFrames in this process.

Answers are checked against the library in this process before anything is timed. The
machine is shared: the figures are indicative; run it longer on a quiet machine.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import orjson
import pandas as pd
from harness import (
    BENCH_DIR,
    LOAD_CPU,
    SERVER_CPU,
    Children,
    Deployment,
    ScenarioError,
    clean_env,
    console,
    prepare_deployment,
    start_server,
)
from load import LoadResult, LoadSpec
from sklearn.datasets import load_breast_cancer

BATCH = 100


def cancer() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    frame = data.data.copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["target"] = data.target
    return frame


def models(trees: int) -> dict[str, Any]:
    import lightgbm
    import xgboost

    frame = cancer()
    x, y = frame.drop(columns="target"), frame["target"]
    return {
        "xgboost": xgboost.XGBClassifier(n_estimators=trees, max_depth=4, n_jobs=1).fit(x, y),
        "lightgbm": lightgbm.LGBMClassifier(n_estimators=trees, verbose=-1, n_jobs=1).fit(x, y),
    }


def register(dep: Deployment, name: str, model: Any, features: list[str]) -> dict[str, Any]:
    """Register ``model`` as a joblib file through the registry's Python API."""
    import modelserve.models  # noqa: F401  # every table, for the foreign keys
    from modelserve.core.db import Database
    from modelserve.registry.schemas import RegistrationMetadata
    from modelserve.registry.service import RegistryService

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    schema = {"features": [{"name": f, "type": "number"} for f in features]}
    meta = RegistrationMetadata.model_validate({"name": name, "input_schema": schema})
    db = Database(dep.database_url, pool_size=1)
    try:
        with db.transaction() as session:
            version = RegistryService(session).register(
                buffer.getvalue(), meta, filename="m.joblib"
            )
    finally:
        db.dispose()
    return version.model_dump(mode="json")


def drive(
    children: Children,
    args: argparse.Namespace,
    url: str,
    bodies: list[bytes],
    headers: dict[str, str],
    connections: int,
) -> LoadResult:
    spec = LoadSpec(
        url=url,
        bodies=[b.decode() for b in bodies],
        headers=headers,
        connections=connections,
        duration=args.duration,
        warmup=1.0,
        cpu=LOAD_CPU,
    )
    proc = children.spawn(
        [sys.executable, str(BENCH_DIR / "load.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(orjson.dumps(asdict(spec)), timeout=args.duration + 120)
    children.stop(proc)
    if proc.returncode != 0:
        raise ScenarioError(err.decode(errors="replace")[-2000:])
    result = LoadResult(**orjson.loads(out))
    if result.errors:
        raise ScenarioError(f"{result.errors} errors: {result.statuses} {result.error_sample}")
    return result


def check(
    client: httpx.Client, name: str, model: Any, rows: pd.DataFrame, tolerance: float
) -> None:
    records = rows.to_dict(orient="records")
    answer = client.post(f"/v1/models/{name}/predict", json={"instances": records}).json()
    want = model.predict_proba(rows)
    got = np.array([[p["0"], p["1"]] for p in answer["probabilities"]])
    if (
        answer["predictions"] != model.predict(rows).tolist()
        or np.abs(got - want).max() > tolerance
    ):
        raise ScenarioError(f"{name}: modelserve's answers differ from the library's")


def in_process_rows_per_second(model: Any, batches: list[pd.DataFrame], seconds: float) -> float:
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.predict_proba(batches[done % len(batches)])
        done += 1
    return done * BATCH / (time.perf_counter() - started)


def bench_library(
    children: Children, args: argparse.Namespace, tmp: Path, dep: Deployment, name: str, model: Any
) -> list[dict[str, Any]]:
    frame = cancer().drop(columns="target")
    features = list(frame.columns)
    version = register(dep, name, model, features)
    twin = version["onnx"] is not None
    artifact = tmp / f"{name}.joblib"
    joblib.dump(model, artifact)
    rng = np.random.default_rng(0)
    sample = frame.sample(64, random_state=0)
    singles = [orjson.dumps({"instances": [r]}) for r in sample.to_dict(orient="records")]
    floor_bodies = [orjson.dumps(row) for row in sample.to_numpy(dtype=float).tolist()]
    batches = [frame.iloc[rng.integers(0, len(frame), BATCH)] for _ in range(8)]
    batch_bodies = [orjson.dumps({"instances": b.to_dict(orient="records")}) for b in batches]
    headers = dep.headers | {"content-type": "application/json"}
    results: list[dict[str, Any]] = []

    def record(scenario: str, result: LoadResult, rows: int = 1) -> None:
        row = {
            "model": name,
            "scenario": scenario,
            "rps": result.rps,
            "rows_per_s": result.rps * rows,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
        }
        results.append(row)
        console.print(
            f"  {name:9} {scenario:28} {result.rps:8.0f} req/s {result.rps * rows:9.0f} rows/s"
            f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms"
        )

    floor = start_server(
        children,
        "floor",
        lambda port: [
            sys.executable,
            str(BENCH_DIR / "floor.py"),
            str(artifact),
            "--columns",
            ",".join(features),
            "--port",
            str(port),
        ],
        clean_env(),
        tmp / f"floor-{name}.log",
        SERVER_CPU,
    )
    record(
        "floor single row",
        drive(
            children,
            args,
            floor.base + "/predict",
            floor_bodies,
            {"content-type": "application/json"},
            args.connections,
        ),
    )
    children.stop(floor.proc)

    server = start_server(
        children,
        "modelserve",
        lambda port: [sys.executable, "-m", "modelserve", "serve", "--port", str(port)],
        dep.env(),
        tmp / f"modelserve-{name}.log",
        SERVER_CPU,
    )
    url = f"{server.base}/v1/models/{name}/predict"
    with httpx.Client(base_url=server.base, headers=dep.headers, timeout=30) as client:
        runtimes = ["sklearn", "onnx"] if twin else ["sklearn"]
        for runtime in runtimes:
            put = client.put(
                f"/v1/models/{name}/serving", json={"runtime": runtime, "batching": None}
            )
            put.raise_for_status()
            time.sleep(0.5)
            check(client, name, model, frame.iloc[:50], 1e-6 if runtime == "sklearn" else 1e-5)
            label = "default (library)" if runtime == "sklearn" else "ONNX twin"
            record(
                f"modelserve {label} single",
                drive(children, args, url, singles, headers, args.connections),
            )
            record(
                f"modelserve {label} 100 rows",
                drive(children, args, url, batch_bodies, headers, 4),
                BATCH,
            )
    children.stop(server.proc)
    rate = in_process_rows_per_second(model, batches, min(args.duration, 3.0))
    results.append(
        {"model": name, "scenario": "in-process predict_proba 100 rows", "rows_per_s": rate}
    )
    console.print(f"  {name:9} {'in-process predict_proba 100':28} {'':14} {rate:9.0f} rows/s")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--trees", type=int, default=200)
    args = parser.parse_args()
    children = Children()
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-formats-") as name:
            tmp = Path(name)
            dep = prepare_deployment(tmp, "formats")
            for library, model in models(args.trees).items():
                results += bench_library(children, args, tmp, dep, library, model)
    finally:
        children.stop_all()
    summarise(results)


def summarise(results: list[dict[str, Any]]) -> None:
    by = {(r["model"], r["scenario"]): r for r in results}
    for model in ("xgboost", "lightgbm"):
        floor = by[(model, "floor single row")]["rps"]
        inproc = by[(model, "in-process predict_proba 100 rows")]["rows_per_s"]
        for label in ("default (library)", "ONNX twin"):
            single = by.get((model, f"modelserve {label} single"))
            batch = by.get((model, f"modelserve {label} 100 rows"))
            if single and batch:
                console.print(
                    f"{model:9} {label:18} single row {single['rps'] / floor:5.2f}x the floor; "
                    f"100 rows {batch['rows_per_s'] / inproc:5.2f}x in-process rows/s"
                )


if __name__ == "__main__":
    main()
