"""The floor: the least a FastAPI + uvicorn server can do to answer ``predict_proba``.

``POST /predict`` takes one row as a JSON list of floats and returns ``predict_proba`` for it as
a JSON list of floats: no authentication, no schema validation, no logging, no registry. It is
the endpoint one would write in ten lines, and the bar modelserve's single-row throughput and
latency are compared against in ``bench/run.py``.

It serves the same estimator modelserve serves: ``run.py`` reads the artifact from the
modelserve database with the registry API (see ``export_artifact``) and writes it to a file.

Run: ``python bench/floor.py ARTIFACT [--columns a,b,c] [--port 8001]``; ``--columns`` names the
features when the estimator was fitted on a DataFrame (it then gets a one-row DataFrame).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import skops.io
import uvicorn
from fastapi import FastAPI


def load_estimator(path: Path) -> Any:
    """An estimator from a skops or joblib/pickle file this benchmark wrote itself."""
    if path.suffix == ".skops":
        return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    return joblib.load(path)


def export_artifact(database_url: str, model: str, directory: Path) -> tuple[Path, list[str]]:
    """Write the version ``model`` resolves to (production alias, else latest) from the
    modelserve database to ``directory``; returns the file and the schema's feature names."""
    from modelserve.core.db import Database
    from modelserve.registry.service import RegistryService

    db = Database(database_url, pool_size=1)
    try:
        with db.transaction() as session:
            registry = RegistryService(session)
            version = registry.resolve(model)
            data = registry.artifact(version.version_id)
    finally:
        db.dispose()
    suffix = ".skops" if version.format == "skops" else ".joblib"
    path = directory / f"{model}-v{version.number}{suffix}"
    path.write_bytes(data)
    return path, version.input_schema.names


def create_app(estimator: Any, columns: list[str] | None) -> FastAPI:
    """The floor app for ``estimator``."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    def as_input(row: list[float]) -> Any:
        if columns:
            return pd.DataFrame([row], columns=columns)
        return np.asarray([row], dtype=float)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/predict")
    def predict(row: list[float]) -> list[float]:
        result: list[float] = estimator.predict_proba(as_input(row))[0].tolist()
        return result

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--columns", default="", help="Comma-separated feature names.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    estimator = load_estimator(args.artifact)
    columns = [c for c in args.columns.split(",") if c] or None
    if columns is None and hasattr(estimator, "feature_names_in_"):
        columns = [str(c) for c in estimator.feature_names_in_]
    app = create_app(estimator, columns)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
