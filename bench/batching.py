"""Focused benchmark of adaptive batching and of the two request forms. Not run in CI.

Run: ``python bench/batching.py [--only batching forms] [--duration 8] [--clients 64]
[--database-url URL]``.

Starts one ``modelserve serve`` (pinned to CPU 0 when there are two or more CPUs; the load
generator, ``bench/load.py`` in its own process, gets CPU 1) on a fresh data dir with the demo
model, registers a HistGradientBoosting classifier (breast cancer data, 100 iterations) and
checks its answers against scikit-learn here, with batching off and on. Then:

* ``batching``: ``--clients`` concurrent single-row clients against the HistGradientBoosting
  model, adaptive batching off, then on (``--max-batch-size``, ``--max-wait-ms``), on v1 and
  on V2 ``infer``, alternated ``--rounds`` times.
* ``forms``: 100-row requests as ``{"instances": [...]}`` and as ``{"columns", "data"}``, on
  iris and on the 30-feature model, in rows/s.

Prints req/s (or rows/s), p50 and p99 per scenario, and the batching speed-up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

BENCH_DIR = Path(__file__).resolve().parent
MULTI_CPU = (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
SERVER_CPU = 0 if MULTI_CPU else None
LOAD_CPU = 1 if MULTI_CPU else None
IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    return env | extra


@contextlib.contextmanager
def server(data_dir: Path, database_url: str, threads: int) -> Iterator[tuple[str, int]]:
    """``modelserve serve`` on ``data_dir``, pinned to the server CPU; yields its base URL and
    process id."""
    port = free_port()
    env = clean_env(
        MODELSERVE_DATA_DIR=str(data_dir),
        MODELSERVE_DATABASE_URL=database_url,
        MODELSERVE_INFERENCE_THREADS=str(threads),
    )
    log = (data_dir / "server.log").open("wb")

    def pin() -> None:
        if SERVER_CPU is not None:
            os.sched_setaffinity(0, {SERVER_CPU})

    proc = subprocess.Popen(
        [sys.executable, "-m", "modelserve", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=pin,  # noqa: PLW1509 (no threads in this process yet)
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None:
                raise SystemExit((data_dir / "server.log").read_text()[-3000:])
            time.sleep(0.1)
        else:
            raise SystemExit("server not ready")
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(
    url: str, key: str, bodies: list[bytes], clients: int, duration: float, pid: int
) -> dict[str, Any]:
    """Run ``bench/load.py`` (closed loop, keep-alive connections) in its own process; adds the
    server's CPU time per request over the measured window (``cpu_ms``)."""
    warmup = 1.5
    spec = {
        "url": url,
        "bodies": [b.decode() for b in bodies],
        "headers": {"X-API-Key": key},
        "connections": clients,
        "duration": duration,
        "warmup": warmup,
        "cpu": LOAD_CPU,
    }
    proc = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "load.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec).encode())
    proc.stdin.close()
    time.sleep(warmup + 0.3)  # the generator starts in well under 0.3 s
    cpu_before = cpu_seconds(pid)
    time.sleep(duration - 0.6)
    cpu = cpu_seconds(pid) - cpu_before
    assert proc.stdout is not None
    assert proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    if proc.wait():
        raise SystemExit(err.decode()[-2000:])
    result: dict[str, Any] = json.loads(out)
    if result["errors"]:
        raise SystemExit(f"errors under load: {result['statuses']} {result['error_sample']}")
    result["cpu_ms"] = 1000.0 * cpu / (result["rps"] * (duration - 0.6))
    return result


def train_hgb() -> tuple[Any, list[str], np.ndarray[Any, Any]]:
    """The model bench/run.py uses for batching: HistGradientBoosting on breast cancer."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier

    data = load_breast_cancer()
    x = np.asarray(data.data, dtype=float)
    features = [str(n).replace(" ", "_") for n in data.feature_names]
    return (
        HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(x, data.target),
        (features),
        x,
    )


def register(client: httpx.Client, name: str, estimator: Any, features: list[str]) -> None:
    import skops.io

    schema = {"features": [{"name": f, "type": "number"} for f in features]}
    response = client.post(
        "/v1/models",
        files={"file": (f"{name}.skops", skops.io.dumps(estimator), "application/octet-stream")},
        data={"metadata": orjson.dumps({"name": name, "input_schema": schema}).decode()},
    )
    response.raise_for_status()


def set_batching(client: httpx.Client, model: str, batching: dict[str, Any] | None) -> None:
    client.put(f"/v1/models/{model}/serving", json={"batching": batching}).raise_for_status()
    time.sleep(0.5)  # the route cache follows the change


def check_answers(
    client: httpx.Client, estimator: Any, features: list[str], x: np.ndarray[Any, Any]
) -> None:
    """Every row of a few concurrent requests answered as scikit-learn answers it here."""
    import concurrent.futures

    def one(i: int) -> None:
        body = {"instances": [dict(zip(features, x[i].tolist(), strict=True))]}
        got = client.post("/v1/models/hgb/predict", json=body).json()
        assert got["predictions"] == estimator.predict(x[i : i + 1]).tolist(), got
        want = estimator.predict_proba(x[i : i + 1])[0]
        have = [got["probabilities"][0][str(c)] for c in estimator.classes_]
        assert np.allclose(have, want, rtol=0, atol=1e-9), (have, want)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(64)))


def v2_body(features: list[str], row: list[float]) -> bytes:
    tensor = {"name": "input", "shape": [1, len(features)], "datatype": "FP64", "data": row}
    return orjson.dumps({"inputs": [tensor]})


def show(label: str, result: dict[str, Any], rows: int = 1) -> float:
    rate = result["rps"] * rows
    unit = "rows/s" if rows > 1 else "req/s"
    print(
        f"  {label:44} {rate:9.0f} {unit:6}  p50 {result['p50_ms']:7.1f} ms  "
        f"p99 {result['p99_ms']:7.1f} ms  server CPU {result['cpu_ms']:.2f} ms/request",
        flush=True,
    )
    return float(rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", default=["batching", "forms"])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="off/on alternations")
    parser.add_argument("--forms", nargs="*", default=["instances", "columnar"])
    parser.add_argument("--threads", type=int, default=4, help="INFERENCE_THREADS")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--database-url", help="default: SQLite in a temporary data dir")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="modelserve-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        url = args.database_url or f"sqlite:///{data_dir / 'modelserve.db'}"
        env = clean_env(MODELSERVE_DATA_DIR=str(data_dir), MODELSERVE_DATABASE_URL=url)
        subprocess.run(
            [sys.executable, "-m", "modelserve", "demo", "--no-serve"],
            env=env,
            check=True,
            capture_output=True,
        )
        key = (data_dir / "demo-api-key").read_text().strip()
        estimator, features, x = train_hgb()
        print(f"server CPU {SERVER_CPU}, load CPU {LOAD_CPU}, {args.clients} clients", flush=True)
        with (
            server(data_dir, url, args.threads) as (base, pid),
            httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as client,
        ):
            register(client, "hgb", estimator, features)
            settings = {"max_batch_size": args.max_batch_size, "max_wait_ms": args.max_wait_ms}
            for batching in (None, settings):
                set_batching(client, "hgb", batching)
                check_answers(client, estimator, features, x)
            if "batching" in args.only:
                single = [
                    orjson.dumps({"instances": [dict(zip(features, r, strict=True))]})
                    for r in x[:200].tolist()
                ]
                v2 = [v2_body(features, r) for r in x[:200].tolist()]
                rates: dict[str, list[float]] = {}
                print(f"batching (HistGradientBoosting, {args.clients} single-row clients):")
                for round_ in range(args.rounds):  # alternated, as the machine's load drifts
                    for label, batching in (("off", None), ("on", settings)):
                        set_batching(client, "hgb", batching)
                        v1_url = f"{base}/v1/models/hgb/predict"
                        result = load(v1_url, key, single, args.clients, args.duration, pid)
                        rates.setdefault(f"v1 {label}", []).append(
                            show(f"round {round_ + 1} v1 batching {label}", result)
                        )
                        v2_url = f"{base}/v2/models/hgb/infer"
                        result = load(v2_url, key, v2, args.clients, args.duration / 2, pid)
                        rates.setdefault(f"v2 {label}", []).append(
                            show(f"round {round_ + 1} v2 batching {label}", result)
                        )
                set_batching(client, "hgb", None)
                median = {k: statistics.median(v) for k, v in rates.items()}
                for protocol in ("v1", "v2"):
                    off, on = median[f"{protocol} off"], median[f"{protocol} on"]
                    print(f"  {protocol} median: off {off:.0f}, on {on:.0f} req/s: {on / off:.2f}x")
            if "forms" in args.only:
                print("forms (100-row requests, 4 clients):")
                iris = np.asarray(
                    [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]] * 34
                )[:100]
                for model, names, rows in (("iris", IRIS, iris), ("hgb", features, x[:100])):
                    for form in args.forms:
                        if form == "instances":
                            instances = [dict(zip(names, r, strict=True)) for r in rows.tolist()]
                            body = orjson.dumps({"instances": instances})
                        else:
                            body = orjson.dumps({"columns": names, "data": rows.tolist()})
                        url = f"{base}/v1/models/{model}/predict"
                        result = load(url, key, [body], 4, args.duration, pid)
                        show(f"{model} {form}", result, rows=100)


if __name__ == "__main__":
    main()
