"""Real ``modelserve serve`` processes for tests about behaviour across processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_server(
    database_url: str, data_dir: Path, *args: str, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``modelserve serve`` (extra CLI ``args``, extra ``MODELSERVE_*`` ``env``), wait
    until /readyz answers 200, yield (base URL, process); terminate it afterwards."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = os.environ | {
        "MODELSERVE_DATABASE_URL": database_url,
        "MODELSERVE_DATA_DIR": str(data_dir),
        **{f"MODELSERVE_{k.upper()}": v for k, v in env.items()},
    }
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelserve", "serve", "--port", str(port), *args],
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, process, log_path)
            yield base, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(base: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise AssertionError(f"server exited:\n{log_path.read_text()}")
        time.sleep(0.1)
    raise AssertionError(f"server never became ready:\n{log_path.read_text()}")
