"""Side-by-side HTTP serving benchmark of scikit-learn models (see README.md).

For every model x server: start the server pinned to CPU 1, wait until it answers,
check its probabilities against in-process predict_proba, then drive it with wrk
pinned to CPU 0 (warm-up run, then the timed run) for each scenario, and stop it by PID.

Usage: python run.py [--runs 2] [--servers floor,mlserver,bentoml] [--models logreg,hgb,demo]
                     [--duration 10] [--warmup 3] [--scenarios single=1x16,batch100=100x4]
Run it with a python that has numpy, scikit-learn and joblib (e.g. the floor venv).
"""

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np

BENCH = Path(__file__).resolve().parent
SERVERS_DIR = BENCH / "servers"
SERVER_CPU, LOADGEN_CPU = "1", "0"
# one BLAS/OpenMP thread everywhere: the server owns exactly one core
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
VENV = {
    "floor": Path(os.environ.get("FLOOR_VENV", BENCH / ".venvs/floor")),
    "mlserver": Path(os.environ.get("MLSERVER_VENV", BENCH / ".venvs/mlserver")),
    "bentoml": Path(os.environ.get("BENTO_VENV", BENCH / ".venvs/bento")),
    # the project under test, installed from its checkout (see README.md, "modelserve")
    "modelserve": Path(os.environ.get("MODELSERVE_VENV", BENCH / ".venvs/modelserve")),
}
# scenario name -> (rows per request, wrk connections)
SCENARIOS = {"single": (1, 16), "batch100": (100, 4)}


# --------------------------------------------------------------------------------------
# Servers. Adding one = a launcher + a request builder (+ a response parser for the
# correctness check), then an entry in SERVERS.
#   launch(model_name, model_path, port, workdir) -> (argv, extra_env, cwd)
#   request(model_name, rows) -> (url_path, body_bytes[, extra request headers])
#   parse(response_bytes) -> array of shape (n_rows, n_classes)
# Optional, for servers that need more than that (modelserve):
#   headers(workdir) -> extra request headers (e.g. an API key the launcher created),
#                       sent by the readiness poll, the correctness check and wrk (-H)
#   configure(model, port, workdir) -> None: once the server answers, before the check
#   collect(model, port, workdir) -> None: after the timed runs, before the stop
#   models: the only models this server is run on (None: all)
#   rtol, atol: the correctness check's tolerance (np.allclose)
# --------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    launch: Callable[[str, Path, int, Path], tuple[list[str], dict, Path]]
    request: Callable[[str, list], tuple[str, bytes] | tuple[str, bytes, dict[str, str]]]
    parse: Callable[[bytes], np.ndarray]
    headers: Callable[[Path], dict[str, str]] | None = None
    configure: Callable[[str, int, Path], None] | None = None
    collect: Callable[[str, int, Path], None] | None = None
    models: tuple[str, ...] | None = None
    pin_postgres: bool = False  # keep the local PostgreSQL off the server's core (see below)
    rtol: float = 1e-9
    atol: float = 1e-12


def launch_floor(model, model_path, port, workdir, http="httptools", loop="uvloop"):
    argv = [
        str(VENV["floor"] / "bin/uvicorn"),
        "floor_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--http",
        http,
        "--loop",
        loop,
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return argv, {"BENCH_MODEL_PATH": str(model_path)}, SERVERS_DIR


def launch_floor_h11(model, model_path, port, workdir):
    return launch_floor(model, model_path, port, workdir, http="h11", loop="asyncio")


def request_floor(model, rows):
    return "/predict", json.dumps(rows).encode()


def request_floor_orjson(model, rows):
    return "/predict_orjson", json.dumps(rows).encode()


def parse_floor(body):
    return np.array(json.loads(body), dtype=np.float64)


def launch_mlserver(model, model_path, port, workdir, extra_model_settings=None):
    repo = workdir / "mlserver_repo"
    (repo / model).mkdir(parents=True, exist_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": port + 10,
        "metrics_port": port + 20,
        "parallel_workers": 0,  # inference in the main process, no worker pool
        "debug": False,  # debug=True (the default) turns on uvicorn's per-request access log
    }
    model_settings = {
        "name": model,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model_path)},
        **(extra_model_settings or {}),
    }
    (repo / "settings.json").write_text(json.dumps(settings, indent=1))
    (repo / model / "model-settings.json").write_text(json.dumps(model_settings, indent=1))
    return [str(VENV["mlserver"] / "bin/mlserver"), "start", str(repo)], {}, workdir


# MLServer's adaptive batching (model-settings.json): up to 64 requests (its limit counts
# requests, modelserve's rows: the same for single-row requests), waiting at most 2 ms
MLSERVER_BATCHING = {"max_batch_size": 64, "max_batch_time": 0.002}


def launch_mlserver_batch(model, model_path, port, workdir):
    return launch_mlserver(model, model_path, port, workdir, MLSERVER_BATCHING)


def request_mlserver(model, rows):
    if model in BY_NAME:
        return request_mlserver_frame(model, rows)
    flat = [v for row in rows for v in row]
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), len(rows[0])],
                "datatype": "FP64",
                "data": flat,
            }
        ],
        "outputs": [{"name": "predict_proba"}],
    }
    return f"/v2/models/{model}/infer", json.dumps(body).encode()


def request_mlserver_frame(model, rows):
    """For a pipeline that takes columns by name: one FP64 input per feature, named after it,
    and the request's content type `pd`, which makes MLServer's scikit-learn runtime decode it
    into a DataFrame (MLServer's documented way; modelserve reads the same request by name)."""
    body = {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {
                "name": name,
                "shape": [len(rows)],
                "datatype": "FP64",
                "data": [row[i] for row in rows],
            }
            for i, name in enumerate(FEATURES[model])
        ],
        "outputs": [{"name": "predict_proba"}],
    }
    return f"/v2/models/{model}/infer", json.dumps(body).encode()


def request_v2_binary(model, rows):
    """The V2 request with its tensor in the binary extension: a JSON header naming the
    tensor and its byte size, then the 8-byte little-endian doubles."""
    n, width = len(rows), len(rows[0])
    blob = np.asarray(rows, dtype="<f8").tobytes()
    header = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [n, width],
                "datatype": "FP64",
                "parameters": {"binary_data_size": len(blob)},
            }
        ],
        "outputs": [{"name": "predict_proba"}],
    }
    head = json.dumps(header).encode()
    return (
        f"/v2/models/{model}/infer",
        head + blob,
        {"Inference-Header-Content-Length": str(len(head))},
    )


def parse_mlserver(body):
    out = json.loads(body)["outputs"][0]
    assert out["name"] == "predict_proba", out["name"]
    return np.array(out["data"], dtype=np.float64).reshape(out["shape"])


def launch_bentoml(model, model_path, port, workdir):
    argv = [
        str(VENV["bentoml"] / "bin/bentoml"),
        "serve",
        "bento_service:SklearnService",
        "--working-dir",
        str(SERVERS_DIR),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {
        "BENCH_MODEL_PATH": str(model_path),
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(workdir / "bentoml_home"),
    }
    return argv, env, workdir


def request_bentoml(model, rows):
    return "/predict_proba", json.dumps({"x": rows}).encode()


def parse_bentoml(body):
    return np.array(json.loads(body), dtype=np.float64)


# --- modelserve, the project under test ---------------------------------------------------
# Each server x model x run gets a fresh MODELSERVE_DATA_DIR (SQLite, the default database)
# prepared with modelserve's own CLI before the server starts: the joblib registered with a
# schema of the 30 features as numbers and pointed at by the `production` alias, a `user`
# account whose API key sends every request, and an `admin` account whose key is used only to
# change serving settings and read /metrics. Authentication, schema validation and the
# prediction log stay on (their defaults); `modelserve serve --workers 1` is one process.

FEATURES: dict[str, list[str]] = {}  # each model's features (meta.json); set by main()
BY_NAME: dict[str, dict] = {}  # models whose pipeline takes columns by name -> their schema
MS_KEY, MS_ADMIN_KEY = "api-key", "admin-api-key"  # files in the workdir


def modelserve_env(workdir: Path) -> dict:
    """Only our data dir (and database, when the workdir names one): any MODELSERVE_* setting
    of the caller's is dropped (None = unset)."""
    env = {k: None for k in os.environ if k.startswith("MODELSERVE_")}
    env["MODELSERVE_DATA_DIR"] = str(workdir / "modelserve_data")
    if (workdir / "database_url").exists():
        env["MODELSERVE_DATABASE_URL"] = (workdir / "database_url").read_text().strip()
    return env


def modelserve_cli(
    workdir: Path, *args: str, stdin: str | None = None, secret: bool = False
) -> str:
    """Run `modelserve ARGS` on the workdir's data dir; its output goes to setup.log (the last
    line, an API key, is left out when `secret`)."""
    env = {k: v for k, v in {**os.environ, **modelserve_env(workdir)}.items() if v is not None}
    done = subprocess.run(
        [str(VENV["modelserve"] / "bin/modelserve"), *args],
        cwd=workdir,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )
    shown = (
        done.stdout.rstrip("\n").rsplit("\n", 1)[0] + "\n(key not logged)\n"
        if secret
        else done.stdout
    )
    with open(workdir / "setup.log", "a") as log:
        log.write(f"$ modelserve {' '.join(args)}\n{shown}{done.stderr}\n")
    if done.returncode != 0:
        raise RuntimeError(
            f"modelserve {' '.join(args[:2])} failed ({done.returncode}): "
            f"{(done.stdout + done.stderr)[-800:]}"
        )
    return done.stdout


TEMPLATES: list[Path] = []  # where prepared data dirs are kept, one per model; set by main()


PG_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def pg_database(name: str, template: str | None = None) -> str:
    """(Re)create PostgreSQL database ``name`` (a copy of ``template``); its SQLAlchemy URL."""
    admin = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    clone = f' TEMPLATE "{template}"' if template else ""
    code = (
        "import psycopg, sys\n"
        "with psycopg.connect(sys.argv[1], autocommit=True) as c:\n"
        f"    c.execute('DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)')\n"
        f"    c.execute('CREATE DATABASE \"{name}\"{clone}')\n"
    )
    subprocess.run([str(VENV["modelserve"] / "bin/python"), "-c", code, admin], check=True)
    return PG_URL.rsplit("/", 1)[0] + f"/{name}"


def postgres_pids() -> list[int]:
    """The local PostgreSQL server's processes (postmaster, backends, helpers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
    return pids


@contextlib.contextmanager
def postgres_on_loadgen_cpu():
    """For a run logging to the local PostgreSQL: its processes on the load generator's core,
    as a database on its own machine would be, instead of taking the server's core (it did, at
    random: p99 doubled and throughput dropped by a third in some runs, though the server's own
    work was the same). Its backends fork from the postmaster, so they inherit the pinning;
    the earlier affinity is restored afterwards. Needs the right to do so (root, or the
    postgres user); without it the run goes on unpinned, and says so."""
    saved = {}
    for pid in postgres_pids():
        try:
            saved[pid] = os.sched_getaffinity(pid)
            os.sched_setaffinity(pid, {int(LOADGEN_CPU)})
        except OSError as exc:
            print(f"  (PostgreSQL process {pid} not pinned: {exc})", flush=True)
    try:
        yield
    finally:
        everything = set().union(*saved.values()) if saved else set(range(os.cpu_count() or 1))
        for pid in postgres_pids():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, saved.get(pid, everything))


def launch_modelserve(model, model_path, port, workdir, pg=False):
    """A fresh copy of the model's prepared data dir (prepared once per run: registering
    converts and checks an ONNX twin, which takes minutes on a loaded machine); with ``pg``,
    on a fresh PostgreSQL database cloned from one prepared the same way."""
    template = TEMPLATES[0] / (f"{model}-pg" if pg else model)
    template_db = f"bench_template_{model}"
    if not (template / MS_ADMIN_KEY).exists():
        shutil.rmtree(template, ignore_errors=True)
        template.mkdir(parents=True)
        if pg:
            (template / "database_url").write_text(pg_database(template_db))
        prepare_modelserve(model, model_path, template)
    shutil.copytree(template / "modelserve_data", workdir / "modelserve_data")
    if pg:
        url = pg_database(f"bench_{model}_live", template=template_db)
        (workdir / "database_url").write_text(url)
    for name in (MS_KEY, MS_ADMIN_KEY, "setup.log"):
        shutil.copy(template / name, workdir / name)
    argv = [
        str(VENV["modelserve"] / "bin/modelserve"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return argv, modelserve_env(workdir), workdir


def prepare_modelserve(model, model_path, workdir):
    t0 = time.time()
    schema = workdir / "schema.json"
    schema.write_text(
        json.dumps(
            BY_NAME.get(model)
            or {"features": [{"name": f, "type": "number"} for f in FEATURES[model]]}
        )
    )
    out = modelserve_cli(
        workdir,
        "models",
        "register",
        str(model_path),
        "--name",
        model,
        "--schema",
        str(schema),
        "--alias",
        "production",
    )
    onnx = next(
        (line.strip() for line in out.splitlines() if line.startswith("onnx twin")), "onnx twin: ?"
    )
    for user, role, keyfile in (("bench", "user", MS_KEY), ("bench-admin", "admin", MS_ADMIN_KEY)):
        modelserve_cli(
            workdir, "users", "create", user, "--role", role, stdin=secrets.token_urlsafe(24) + "\n"
        )
        key = (
            modelserve_cli(workdir, "api-keys", "create", user, "--name", "bench", secret=True)
            .strip()
            .splitlines()[-1]
            .strip()
        )
        (workdir / keyfile).write_text(key + "\n")
    print(f"  {model}: data dir prepared in {time.time() - t0:.1f}s ({onnx})", flush=True)


def headers_modelserve(workdir):
    return {"X-API-Key": (workdir / MS_KEY).read_text().strip()}


def request_modelserve(model, rows):
    # the columnar form: every feature named once, then one array of values per row
    return f"/v1/models/{model}/predict", json.dumps(
        {"columns": FEATURES[model], "data": rows}
    ).encode()


def label_order(label: str) -> tuple:
    """scikit-learn's order of classes (sorted values): numbers as numbers, else text."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def parse_modelserve(body):
    probs = json.loads(body)["probabilities"]  # one {label: probability} per row
    labels = sorted(probs[0], key=label_order)  # -> columns in the model's class order
    return np.array([[p[label] for label in labels] for p in probs], dtype=np.float64)


def modelserve_admin(port, workdir, method, path, settings=None):
    body = None if settings is None else json.dumps(settings).encode()
    status, resp = post(
        port,
        path,
        body,
        method=method,
        headers={"X-API-Key": (workdir / MS_ADMIN_KEY).read_text().strip()},
    )
    if status != 200:
        raise RuntimeError(f"{method} {path}: HTTP {status}: {resp[:300]!r}")
    return resp


def modelserve_serving(settings):
    """A configure hook: PUT the model's serving settings (as documented in modelserve's README)."""

    def configure(model, port, workdir):
        if settings.get("runtime") == "onnx":
            version = json.loads(
                modelserve_admin(port, workdir, "GET", f"/v1/models/{model}/versions/1")
            )
            if not version.get("onnx"):
                raise RuntimeError(f"{model} v1 has no ONNX twin: it would run on scikit-learn")
        got = json.loads(
            modelserve_admin(port, workdir, "PUT", f"/v1/models/{model}/serving", settings)
        )
        time.sleep(1.0)  # the server follows registry changes within REGISTRY_POLL_SECONDS (0.25 s)
        print(f"  {workdir.name}: serving settings {json.dumps(got)}", flush=True)

    return configure


MS_METRICS = (
    "modelserve_prediction_log_written_total",
    "modelserve_prediction_log_spilled_total",
    "modelserve_prediction_log_queue_depth",
    "modelserve_prediction_log_batch_seconds_count",
    "modelserve_prediction_log_batch_seconds_sum",
    "modelserve_batching_requests_total",
    "modelserve_batching_model_calls_total",
    "modelserve_batching_merged_calls_total",
    "modelserve_batching_largest_batch",
)


def collect_modelserve(model, port, workdir):
    """After the timed runs: save /metrics, print the prediction-log and batching counters."""
    text = modelserve_admin(port, workdir, "GET", "/metrics").decode()
    (workdir / "metrics.txt").write_text(text)
    found = {}
    for line in text.splitlines():
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        if name in MS_METRICS:
            found[name] = found.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    print(
        f"  {workdir.name}: "
        + ", ".join(f"{k.removeprefix('modelserve_')} {v:.4g}" for k, v in found.items()),
        flush=True,
    )


SERVERS = {
    "floor": Server("floor", 18001, launch_floor, request_floor, parse_floor),
    # variants of the floor, to show where its time goes (same app file, see servers/floor_app.py)
    "floor-h11": Server("floor-h11", 18004, launch_floor_h11, request_floor, parse_floor),
    "floor-orjson": Server("floor-orjson", 18005, launch_floor, request_floor_orjson, parse_floor),
    "mlserver": Server("mlserver", 18002, launch_mlserver, request_mlserver, parse_mlserver),
    "bentoml": Server("bentoml", 18003, launch_bentoml, request_bentoml, parse_bentoml),
    # MLServer with adaptive batching on (MLSERVER_BATCHING), for the many-connection scenario
    "mlserver-batch": Server(
        "mlserver-batch", 18010, launch_mlserver_batch, request_mlserver, parse_mlserver
    ),
    # modelserve: the same launch for each; v1 columnar requests, or the V2 request MLServer
    # gets. With its defaults a model with a verified ONNX twin (both of these) is served by
    # ONNX Runtime: the twins are float32 and only kept within 1e-5 of scikit-learn's
    # probabilities (modelserve's README), so the check allows that much
    "modelserve": Server(
        "modelserve",
        18006,
        launch_modelserve,
        request_modelserve,
        parse_modelserve,
        headers=headers_modelserve,
        collect=collect_modelserve,
        rtol=0.0,
        atol=1e-5,
    ),
    "modelserve-v2": Server(
        "modelserve-v2",
        18007,
        launch_modelserve,
        request_mlserver,
        parse_mlserver,
        headers=headers_modelserve,
        collect=collect_modelserve,
        rtol=0.0,
        atol=1e-5,
    ),
    "modelserve-v2-binary": Server(
        "modelserve-v2-binary",
        18011,
        launch_modelserve,
        request_v2_binary,
        parse_mlserver,
        headers=headers_modelserve,
        collect=collect_modelserve,
        rtol=0.0,
        atol=1e-5,
    ),
    # ...with scikit-learn pinned (PUT serving {"runtime": "sklearn"}): answers bit-identical
    "modelserve-sklearn": Server(
        "modelserve-sklearn",
        18012,
        launch_modelserve,
        request_modelserve,
        parse_modelserve,
        headers=headers_modelserve,
        collect=collect_modelserve,
        configure=modelserve_serving({"runtime": "sklearn", "batching": None}),
    ),
    "modelserve-v2-sklearn": Server(
        "modelserve-v2-sklearn",
        18013,
        launch_modelserve,
        request_mlserver,
        parse_mlserver,
        headers=headers_modelserve,
        collect=collect_modelserve,
        configure=modelserve_serving({"runtime": "sklearn", "batching": None}),
    ),
    # ...with adaptive batching on (the README's example limits), hgb only (a tree ensemble:
    # the per-call cost batching is for)
    "modelserve-batch": Server(
        "modelserve-batch",
        18008,
        launch_modelserve,
        request_modelserve,
        parse_modelserve,
        headers=headers_modelserve,
        collect=collect_modelserve,
        models=("hgb",),
        rtol=0.0,
        atol=1e-5,
        configure=modelserve_serving(
            {"runtime": "onnx", "batching": {"max_batch_size": 64, "max_wait_ms": 2}}
        ),
    ),
    # ...logging to PostgreSQL (PG_URL's server) instead of SQLite: a fresh database per run,
    # cloned from one prepared per model; the local PostgreSQL kept on wrk's core meanwhile
    "modelserve-pg": Server(
        "modelserve-pg",
        18014,
        lambda model, path, port, workdir: launch_modelserve(model, path, port, workdir, pg=True),
        request_modelserve,
        parse_modelserve,
        headers=headers_modelserve,
        collect=collect_modelserve,
        pin_postgres=True,
        rtol=0.0,
        atol=1e-5,
    ),
}


# --------------------------------------------------------------------------------------
# Process handling: everything we stop is a process we started (or its descendant).
# --------------------------------------------------------------------------------------


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def proc_start_time(pid: int):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def descendants(root: int) -> list[tuple[int, str]]:
    """(pid, start time) of every live descendant of root, read from /proc."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    found, stack = [], [root]
    while stack:
        for c in children.get(stack.pop(), []):
            found.append((c, proc_start_time(c)))
            stack.append(c)
    return found


def stop(proc: subprocess.Popen, port: int, timeout: float = 20.0) -> str:
    """SIGTERM the PID we started, wait; then SIGKILL any of its recorded descendants left."""
    kids = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    note = "clean"
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        note = "SIGKILL after timeout"
    deadline = time.time() + timeout
    for pid, started in kids:
        while proc_start_time(pid) == started and time.time() < deadline:
            time.sleep(0.1)
        if proc_start_time(pid) == started:  # same process still alive (not a reused PID)
            os.kill(pid, signal.SIGKILL)
            note = f"SIGKILL leftover child {pid}"
    while port_in_use(port) and time.time() < deadline:
        time.sleep(0.1)
    return note


def post(
    port: int,
    path: str,
    body: bytes | None,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(srv: Server, proc, path, body, headers=None, timeout=120.0) -> float:
    t0 = time.time()
    last = "no answer"
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{srv.name} exited with code {proc.returncode} during startup")
        try:
            status, resp = post(srv.port, path, body, timeout=5, headers=headers)
            if status == 200:
                return time.time() - t0
            last = f"HTTP {status}: {resp[:300]!r}"
        except OSError as e:
            last = repr(e)
        time.sleep(0.25)
    raise RuntimeError(f"{srv.name} not ready after {timeout}s; last: {last}")


# --------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------

UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def run_wrk(port, path, body_file, conns, seconds, latency=True, headers=None) -> tuple[dict, str]:
    argv = (
        [
            "taskset",
            "-c",
            LOADGEN_CPU,
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{seconds}s",
            "-s",
            str(BENCH / "post.lua"),
        ]
        + (["--latency"] if latency else [])
        + [arg for k, v in (headers or {}).items() for arg in ("-H", f"{k}: {v}")]
        + [f"http://127.0.0.1:{port}{path}", "--", str(body_file)]
    )
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    res = {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "req_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "non2xx": int(m.group(1))
        if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out))
        else 0,
        "socket_errors": sum(map(int, m.groups()))
        if (
            m := re.search(
                r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
            )
        )
        else 0,
    }
    if latency:
        for pct in ("50", "99"):
            res[f"p{pct}_ms"] = to_ms(re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M).group(1))
    return res, out


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def request_of(srv: Server, model: str, rows: list, headers: dict) -> tuple[str, bytes, dict]:
    """The request's path, body and headers (the server's, plus any this body needs)."""
    made = srv.request(model, rows)
    return made[0], made[1], {**headers, **(made[2] if len(made) == 3 else {})}


def bench_one(
    srv: Server, model: str, models_dir: Path, meta: dict, rundir: Path, args
) -> list[dict]:
    if not srv.pin_postgres:
        return bench_server(srv, model, models_dir, meta, rundir, args)
    with postgres_on_loadgen_cpu():
        return bench_server(srv, model, models_dir, meta, rundir, args)


def bench_server(
    srv: Server, model: str, models_dir: Path, meta: dict, rundir: Path, args
) -> list[dict]:
    model_path = models_dir / f"{model}.joblib"
    ref_model = joblib.load(model_path)
    workdir = rundir / f"{srv.name}-{model}"
    workdir.mkdir(parents=True)
    rows_for = {1: [meta["sample_row"]], 100: meta["batch_rows"]}

    if port_in_use(srv.port):
        raise RuntimeError(f"port {srv.port} already in use: not ours, refusing to benchmark it")
    argv, extra_env, cwd = srv.launch(model, model_path, srv.port, workdir)
    headers = srv.headers(workdir) if srv.headers else {}
    # extra_env: a value of None removes that variable
    env = {k: v for k, v in {**os.environ, **THREAD_ENV, **extra_env}.items() if v is not None}
    log = open(workdir / "server.log", "wb")
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU] + argv,
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    results = []
    try:
        path, body, first_headers = request_of(srv, model, rows_for[1], headers)
        startup_s = wait_ready(srv, proc, path, body, first_headers)
        if srv.configure:
            srv.configure(model, srv.port, workdir)
        # correctness: the server's probabilities must match in-process predict_proba
        for n, rows in rows_for.items():
            path, body, these = request_of(srv, model, rows, headers)
            status, resp = post(srv.port, path, body, headers=these)
            if status != 200:
                raise RuntimeError(
                    f"{srv.name}/{model}: HTTP {status} for {n} rows: {resp[:300]!r}"
                )
            got, want = srv.parse(resp), ref_model.predict_proba(model_input(model, rows))
            if got.shape != want.shape or not np.allclose(got, want, rtol=srv.rtol, atol=srv.atol):
                raise RuntimeError(
                    f"{srv.name}/{model}: wrong probabilities for {n} rows:\n{got[:3]}\nvs\n{want[:3]}"
                )
            print(
                f"  {srv.name}/{model}: ready in {startup_s:.1f}s, {n:>3}-row answer matches "
                f"(max abs diff {np.abs(got - want).max():.1e})",
                flush=True,
            )
        for scen, (n, conns) in args.scenarios.items():
            path, body, these = request_of(srv, model, rows_for[n], headers)
            body_file = workdir / f"body_{scen}.json"
            body_file.write_bytes(body)
            run_wrk(srv.port, path, body_file, conns, args.warmup, latency=False, headers=these)
            res, raw = run_wrk(srv.port, path, body_file, conns, args.duration, headers=these)
            (workdir / f"wrk_{scen}.txt").write_text(raw)
            ok = res["non2xx"] == 0 and res["socket_errors"] == 0 and res["requests"] > 0
            results.append(
                {
                    "server": srv.name,
                    "model": model,
                    "scenario": scen,
                    "rows": n,
                    "conns": conns,
                    "rows_s": res["req_s"] * n,
                    "valid": ok,
                    **res,
                }
            )
            print(
                f"  {srv.name}/{model}/{scen}: {res['req_s']:.0f} req/s, p50 {res['p50_ms']:.2f} ms, "
                f"p99 {res['p99_ms']:.2f} ms, non2xx {res['non2xx']}, socket errors "
                f"{res['socket_errors']}",
                flush=True,
            )
        if srv.collect:
            srv.collect(model, srv.port, workdir)
    finally:
        note = stop(proc, srv.port)
        log.close()
        print(f"  {srv.name}/{model}: stopped ({note})", flush=True)
    return results


def make_demo(models_dir: Path, capture: bool = False) -> dict:
    """Train the demo model (make_demo.py: modelserve's own training, so with modelserve's venv)
    and register its features and schema here; its meta.json."""
    command = [str(VENV["modelserve"] / "bin/python"), str(BENCH / "make_demo.py"), str(models_dir)]
    subprocess.run(command, check=True, capture_output=capture)
    meta = json.loads((models_dir / "demo.meta.json").read_text())
    FEATURES["demo"] = meta["feature_names"]
    BY_NAME["demo"] = meta["schema"]
    return meta


def model_input(model: str, rows: list):
    """What the model's own predict_proba takes: a matrix, or a DataFrame for a pipeline that
    selects columns by name."""
    if model in BY_NAME:
        import pandas as pd

        return pd.DataFrame(rows, columns=FEATURES[model], dtype=np.float64)
    return np.array(rows, dtype=np.float64)


def inprocess_rows(
    models_dir: Path, models: list[str], rundir: Path, scenarios: dict
) -> tuple[list[dict], dict]:
    out = subprocess.run(
        ["taskset", "-c", SERVER_CPU, sys.executable, str(BENCH / "inprocess.py"), str(models_dir)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **THREAD_ENV},
    ).stdout
    (rundir / "inprocess.json").write_text(out)
    data = json.loads(out)
    rows = []
    for model in models:
        for scen, (n, _) in scenarios.items():
            d = data[model][str(n)]
            rows.append(
                {
                    "server": "in-process",
                    "model": model,
                    "scenario": scen,
                    "rows": n,
                    "req_s": d["calls_per_s"],
                    "rows_s": d["rows_per_s"],
                    "p50_ms": d["p50_ms"],
                    "p99_ms": d["p99_ms"],
                    "valid": True,
                }
            )
    return rows, data


def table(results: list[dict]) -> str:
    floor = {(r["model"], r["scenario"]): r for r in results if r["server"] == "floor"}
    head = (
        "server",
        "model",
        "scenario",
        "req/s",
        "rows/s",
        "p50 ms",
        "p99 ms",
        "req/s÷floor",
        "p50÷floor",
        "p99÷floor",
        "ok",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        f = floor.get((r["model"], r["scenario"]))
        ratio = (lambda k: f"{r[k] / f[k]:.2f}") if f else (lambda k: "-")
        lines.append(
            "| "
            + " | ".join(
                [
                    r["server"],
                    r["model"],
                    r["scenario"],
                    f"{r['req_s']:.0f}",
                    f"{r['rows_s']:.0f}",
                    f"{r['p50_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                    ratio("req_s"),
                    ratio("p50_ms"),
                    ratio("p99_ms"),
                    "yes" if r["valid"] else "NO",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def noise_table(runs: list[list[dict]]) -> str:
    """req/s of each row in every run, and the spread (max-min)/mean across runs."""
    by_key: dict[tuple, list[float]] = {}
    for results in runs:
        for r in results:
            by_key.setdefault((r["server"], r["model"], r["scenario"]), []).append(r["req_s"])
    lines = [
        "| server | model | scenario | "
        + " | ".join(f"run{i + 1} req/s" for i in range(len(runs)))
        + " | spread |",
        "|" + "---|" * (len(runs) + 4),
    ]
    for (srv, model, scen), v in by_key.items():
        spread = (max(v) - min(v)) / (sum(v) / len(v)) * 100
        lines.append(
            f"| {srv} | {model} | {scen} | "
            + " | ".join(f"{x:.0f}" for x in v)
            + f" | {spread:.0f}% |"
        )
    return "\n".join(lines)


def environment() -> dict:
    def pkgs(venv):
        code = (
            "import importlib.metadata as m\nfor p in ['mlserver','mlserver-sklearn','bentoml',"
            "'modelserve','fastapi','starlette','uvicorn','uvloop','httptools','orjson',"
            "'sqlalchemy','onnxruntime','skl2onnx','scikit-learn','numpy']:\n"
            "  try: print(p, m.version(p))\n  except m.PackageNotFoundError: pass"
        )
        out = subprocess.run(
            [str(venv / "bin/python"), "-c", code], capture_output=True, text=True
        ).stdout
        return dict(line.split() for line in out.splitlines())

    cpu = next(
        (
            l.split(":", 1)[1].strip()
            for l in Path("/proc/cpuinfo").read_text().splitlines()
            if l.startswith("model name")
        ),
        "?",
    )
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "wrk": subprocess.run(
            ["wrk", "--version"], capture_output=True, text=True
        ).stdout.splitlines()[0],
        "venvs": {k: pkgs(v) for k, v in VENV.items() if (v / "bin/python").exists()},
    }


def parse_scenarios(text: str) -> dict[str, tuple[int, int]]:
    """'single=1x16,batch100=100x4' -> {"single": (1, 16), "batch100": (100, 4)}"""
    scenarios = {}
    for item in text.split(","):
        name, _, spec = item.partition("=")
        rows, _, conns = spec.partition("x")
        if not (name and rows in ("1", "100") and conns.isdigit() and int(conns) > 0):
            raise argparse.ArgumentTypeError(
                f"bad scenario {item!r}: NAME=ROWSxCONNS, rows 1 or 100"
            )
        scenarios[name] = (int(rows), int(conns))
    return scenarios


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--servers", default="floor,floor-h11,floor-orjson,mlserver,bentoml")
    ap.add_argument("--models", default="logreg,hgb,demo")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument(
        "--scenarios",
        type=parse_scenarios,
        default=SCENARIOS,
        help="NAME=ROWSxCONNS,... (rows 1 or 100); default single=1x16,batch100=100x4",
    )
    ap.add_argument("--out", type=Path, default=BENCH / "out")
    args = ap.parse_args()
    args.out = args.out.resolve()  # the servers run in other directories
    servers = [SERVERS[s] for s in args.servers.split(",")]
    models = args.models.split(",")

    models_dir = args.out / "models"
    subprocess.run([sys.executable, str(BENCH / "make_models.py"), str(models_dir)], check=True)
    metas = dict.fromkeys(("logreg", "hgb"), json.loads((models_dir / "meta.json").read_text()))
    FEATURES.update({model: meta["feature_names"] for model, meta in metas.items()})
    if "demo" in models:
        metas["demo"] = make_demo(models_dir)
    TEMPLATES[:] = [args.out / "modelserve-templates" / time.strftime("%Y%m%d-%H%M%S")]
    env_info = environment()
    print(json.dumps(env_info, indent=1))

    all_runs = []
    for run in range(1, args.runs + 1):
        rundir = args.out / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-run{run}"
        rundir.mkdir(parents=True)
        print(f"\n=== run {run}/{args.runs} -> {rundir}", flush=True)
        results, inproc = inprocess_rows(models_dir, models, rundir, args.scenarios)
        # Every other run takes the servers in reverse order: the machine's speed drifts over a
        # run (by half, at times), which would otherwise favour whichever server goes first.
        ordered = servers if run % 2 else servers[::-1]
        for model in models:
            for srv in ordered:
                if srv.models is not None and model not in srv.models:
                    continue
                try:
                    results += bench_one(srv, model, models_dir, metas[model], rundir, args)
                except Exception as e:  # report and continue with the next server
                    print(f"  !! {srv.name}/{model} FAILED: {e}", flush=True)
        order = {s: i for i, s in enumerate(["in-process"] + [s.name for s in servers])}
        scen_order = list(args.scenarios)
        results.sort(
            key=lambda r: (
                models.index(r["model"]),
                scen_order.index(r["scenario"]),
                order[r["server"]],
            )
        )
        text = table(results)
        batch1000 = ", ".join(f"{m} {inproc[m]['1000']['rows_per_s']:,.0f} rows/s" for m in models)
        text += f"\n\nin-process 1000-row batch predict_proba: {batch1000}\n"
        (rundir / "results.json").write_text(
            json.dumps(
                {
                    "env": env_info,
                    "args": vars(args) | {"out": str(args.out)},
                    "scenarios": args.scenarios,
                    "results": results,
                    "inprocess": inproc,
                },
                indent=1,
            )
        )
        (rundir / "table.md").write_text(text)
        print(f"\n{text}", flush=True)
        all_runs.append(results)
    if len(all_runs) > 1:
        text = noise_table(all_runs)
        (args.out / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-noise.md").write_text(text + "\n")
        print(f"\nrun-to-run noise (req/s):\n{text}", flush=True)


if __name__ == "__main__":
    main()
