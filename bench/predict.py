"""Single-row and 100-row prediction throughput of a real ``modelserve serve`` process.

Run: ``python bench/predict.py [--seconds 10] [--concurrency 16] [--database-url URL]``.
Starts a server on a fresh SQLite database (or the given one) with the iris demo model, checks
the answers, then drives it with an async httpx client and prints req/s, rows/s, p50 and p99.
Not run in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

INSTANCE = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path, database_url: str | None, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {"MODELSERVE_DATA_DIR": str(data_dir)}
    if database_url:
        env["MODELSERVE_DATABASE_URL"] = database_url
    subprocess.run(
        [sys.executable, "-m", "modelserve", "demo", "--no-serve"],
        env=env,
        check=True,
        capture_output=True,
    )
    cmd = [sys.executable, "-m", "modelserve", "serve", "--port", str(port)]
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        cmd = ["taskset", "-c", "0", *cmd]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("server did not become ready")


async def drive(
    url: str, body: dict[str, object], seconds: float, concurrency: int, headers: dict[str, str]
) -> list[float]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:

        async def worker() -> None:
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = await client.post(url, json=body)
                if response.status_code != 200:
                    raise SystemExit(f"unexpected {response.status_code}: {response.text}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def report(label: str, latencies: list[float], seconds: float, rows: int) -> None:
    latencies.sort()
    n = len(latencies)
    p50 = latencies[n // 2] * 1000
    p99 = latencies[min(n - 1, int(n * 0.99))] * 1000
    print(
        f"{label:<22} {n / seconds:>9.1f} req/s {n * rows / seconds:>10.1f} rows/s "
        f"p50 {p50:>7.2f} ms  p99 {p99:>7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), args.database_url, port)
        try:
            url = f"http://127.0.0.1:{port}/v1/models/iris/predict"
            headers = {"X-API-Key": (Path(tmp) / "demo-api-key").read_text().strip()}
            check = httpx.post(url, json={"instances": [INSTANCE]}, headers=headers).json()
            assert check["predictions"] == ["setosa"], check
            for rows in (1, 100):
                body = {"instances": [INSTANCE] * rows}
                asyncio.run(drive(url, body, 1.0, args.concurrency, headers))  # warm-up
                latencies = asyncio.run(drive(url, body, args.seconds, args.concurrency, headers))
                report(f"{rows}-row x{args.concurrency}", latencies, args.seconds, rows)
        finally:
            server.terminate()
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
