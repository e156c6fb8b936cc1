"""Where a modelserve request's time goes: py-spy samples the server under wrk load.

For each model x request form it prepares a fresh data dir (as ``sidebyside/run.py`` does:
schema, ``production`` alias, a user's API key; SQLite; authentication, validation and the
prediction log on), starts ``modelserve serve --workers 1`` under ``py-spy record`` (raw
collapsed stacks, idle frames left out), drives it with wrk for ``--duration`` seconds, then
sorts every sample into the stage of the request it belongs to and prints the shares.

Run: ``python bench/profile_server.py [--models logreg,hgb]
[--forms v1-columnar,v1-records,v2,v2-binary] [--duration 15]`` with py-spy installed
(``pip install py-spy``) and wrk on the PATH. Writes ``bench/out/profile/<model>-<form>.txt``
(raw stacks). Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "sidebyside"))
import run as sbs  # noqa: E402  (the side-by-side harness: data dir set-up, wrk, stop)

# (stage, substrings of a frame "function (file)" that put a sample in it); first match wins,
# searched from the innermost frame outwards
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("log record (encode + write)", ("predictions/", "sqlalchemy", "sqlite3")),
    (
        "scikit-learn input checks",
        (
            "validate_data",
            "check_array",
            "_check_feature_names",
            "_assert_all_finite",
            "_check_n_features",
            "check_is_fitted",
            "get_config",
            "config_context",
        ),
    ),
    ("model", ("sklearn/", "scipy/", "threadpoolctl")),
    ("building the matrix", ("model_input", "column_stack", "column_blocks", "_features")),
    ("validation", ("validation.py", "columns.py")),
    (
        "V2 decoding",
        (
            "protocols/v2/codec",
            "protocols/v2/binary",
            "protocols/v2/decode",
            "pydantic",
            "model_validate",
        ),
    ),
    (
        "building the response",
        (
            "to_outputs",
            "_render",
            "ORJSONResponse",
            "responses.py",
            "PredictionResult",
            "predictor.py",
        ),
    ),
    ("parsing the body", ("parse_json", "read_body", "orjson")),
    ("authentication", ("auth/", "request_caller", "quota_caller", "deps.py")),
    ("routing + service", ("inference/", "lifecycle/", "registry/")),
    (
        "HTTP + event loop",
        (
            "uvicorn",
            "starlette",
            "fastapi",
            "httptools",
            "uvloop",
            "anyio",
            "asyncio",
            "concurrent/futures",
            "threading",
        ),
    ),
]


def stage_of(stack: str) -> str:
    frames = stack.split(";")[::-1]  # innermost first
    for frame in frames:
        for stage, needles in STAGES:
            if any(n in frame for n in needles):
                return stage
    return "other"


def summarize(raw: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[stage_of(stack)] += int(n)
    return counts


def request_for(
    form: str, model: str, rows: list[list[float]]
) -> tuple[str, bytes, dict[str, str]]:
    """The request path, body and extra headers of one request form."""
    if form == "v2-binary":
        path, body, headers = sbs.request_v2_binary(model, rows)
        return path, body, headers
    if form == "v2":
        return (*sbs.request_mlserver(model, rows), {})
    if form == "v1-records":
        instances = [dict(zip(sbs.FEATURES[model], row, strict=True)) for row in rows]
        return f"/v1/models/{model}/predict", json.dumps({"instances": instances}).encode(), {}
    return (*sbs.request_modelserve(model, rows), {})


def profile_model(
    model: str, forms: list[str], rows_list: list[int], args: argparse.Namespace, out: Path
) -> None:
    """One server for the model; py-spy attaches to it once per request form."""
    name = "demo.meta.json" if model == "demo" else "meta.json"
    meta = json.loads((out / "models" / name).read_text())
    port = 18050
    proc = None
    workdir = data_dir(model, out)
    argv = [
        str(sbs.VENV["modelserve"] / "bin/modelserve"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    extra = sbs.modelserve_env(workdir)
    try:
        env = {k: v for k, v in {**os.environ, **sbs.THREAD_ENV, **extra}.items() if v is not None}
        log = open(workdir / "server.log", "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            ["taskset", "-c", sbs.SERVER_CPU, *argv],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        headers = sbs.headers_modelserve(workdir)
        for form in forms:
            for rows in rows_list:
                body_rows = [meta["sample_row"]] if rows == 1 else meta["batch_rows"]
                path, body, extra_headers = request_for(form, model, body_rows)
                these = {**headers, **extra_headers}
                srv = sbs.Server(
                    "profiled",
                    port,
                    sbs.launch_modelserve,
                    lambda m, r, p=path, b=body: (p, b),
                    sbs.parse_modelserve,
                )
                sbs.wait_ready(srv, proc, path, body, these)
                body_file = workdir / "body.json"
                body_file.write_bytes(body)
                conns = 16 if rows == 1 else 4
                sbs.run_wrk(port, path, body_file, conns, 2, latency=False, headers=these)
                raw = out / "profile" / f"{model}-{form}-{rows}.txt"
                raw.parent.mkdir(parents=True, exist_ok=True)
                spy = subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "--pid",
                        str(proc.pid),
                        "--format",
                        "raw",
                        "--rate",
                        "200",
                        "--output",
                        str(raw),
                        "--duration",
                        str(args.duration),
                        "--gil",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                res, _ = sbs.run_wrk(port, path, body_file, conns, args.duration, headers=these)
                spy.wait(timeout=args.duration + 60)
                report(model, form, rows, res, raw)
        log.close()
    finally:
        if proc is not None and proc.poll() is None:
            sbs.stop(proc, port)


def prepare(out: Path, models: list[str]) -> dict[str, Any]:
    """Train the bench's models into ``out/models`` (the demo model too when asked) and point
    the side-by-side harness at this interpreter's modelserve; logreg's and hgb's meta.json."""
    subprocess.run(
        [sys.executable, str(HERE / "sidebyside" / "make_models.py"), str(out / "models")],
        check=True,
        capture_output=True,
    )
    meta: dict[str, Any] = json.loads((out / "models" / "meta.json").read_text())
    sbs.FEATURES.update(dict.fromkeys(("logreg", "hgb"), meta["feature_names"]))
    sbs.VENV["modelserve"] = Path(sys.prefix)
    if "demo" in models:  # trained as `modelserve demo` does (make_demo.py)
        sbs.make_demo(out / "models", capture=True)
    sbs.TEMPLATES[:] = [out / "profile" / "templates"]
    return meta


def data_dir(model: str, out: Path, *, pg: bool = False) -> Path:
    """The model's prepared data dir (schema, alias, API key; SQLite, or with ``pg`` the
    PostgreSQL database the side-by-side harness makes, ``bench_<model>_live``), made when
    missing and kept for the next run (registering takes a while)."""
    workdir = out / "profile" / (f"data-{model}-pg" if pg else f"data-{model}")
    if not (workdir / sbs.MS_ADMIN_KEY).exists():
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        sbs.launch_modelserve(model, out / "models" / f"{model}.joblib", 0, workdir, pg=pg)
    return workdir


def report(model: str, form: str, rows: int, res: dict[str, float], raw: Path) -> None:
    counts = summarize(raw)
    total = sum(counts.values()) or 1
    print(
        f"\n{model} {form} {rows} row(s): {res['req_s']:.0f} req/s under py-spy "
        f"(non-2xx {res['non2xx']}), {total} samples",
        flush=True,
    )
    for stage, n in counts.most_common():
        print(f"  {stage:32s} {100 * n / total:5.1f}%", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="logreg,hgb", help="any of logreg, hgb, demo")
    ap.add_argument("--forms", default="v1-columnar,v1-records,v2")
    ap.add_argument("--rows", default="1", help="1, 100 or 1,100")
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args()
    out = args.out.resolve()
    prepare(out, args.models.split(","))
    for model in args.models.split(","):
        profile_model(
            model, args.forms.split(","), [int(r) for r in args.rows.split(",")], args, out
        )


if __name__ == "__main__":
    main()
