"""A closed-loop HTTP load generator: N concurrent workers, each looping POSTs over its own
keep-alive connection for a fixed time after a short warm-up.

Run by ``bench/run.py`` in its own process, pinned to a CPU the server does not use: the spec
comes as JSON on stdin, the result goes as JSON to stdout. Every request's latency is taken
with ``perf_counter``; only requests started after the warm-up and finished before the end of
the window count.

Two clients:

* ``raw`` (default): a minimal HTTP/1.1 client on asyncio streams (uvloop when installed),
  about 0.1 ms of CPU per request, so it drives a server on the other core to its limit
  without becoming the bottleneck.
* ``httpx``: ``httpx.AsyncClient``; simpler to trust, but measured at 1.5-2 ms of CPU per
  request on the benchmark machine, so it saturates its core near 500-600 req/s and then
  measures itself. The result carries the generator's CPU use so saturation shows either way.

Usable directly: ``echo '{"url": ..., "bodies": [...], ...}' | python bench/load.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class LoadSpec:
    """What to send, how hard and for how long."""

    url: str
    bodies: list[str]
    """JSON bodies, sent round robin (each worker starts at a different one)."""
    headers: dict[str, str] = field(default_factory=dict)
    connections: int = 16
    duration: float = 10.0
    warmup: float = 1.5
    client: str = "raw"
    cpu: int | None = None
    """CPU to pin this process to (None: leave the affinity alone)."""
    timeout: float = 30.0


@dataclass
class LoadResult:
    """What came back in the measured window."""

    requests: int
    errors: int
    elapsed: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    statuses: dict[str, int]
    error_sample: str | None
    cpu_percent: float
    """This process's CPU time over the whole run, as a share of one core (100: saturated)."""
    in_flight: int = 0
    """Requests started in the window that had not finished when it closed."""


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


Sender = Callable[[bytes], Awaitable[tuple[int, bytes]]]


class RawConnection:
    """One keep-alive HTTP/1.1 connection that sends a fixed POST with varying bodies."""

    def __init__(self, spec: LoadSpec) -> None:
        parts = urlsplit(spec.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += ["Content-Type: application/json", "Accept: */*"]
        lines += [f"{k}: {v}" for k, v in spec.headers.items()]
        self.head = "\r\n".join(lines).encode() + b"\r\nContent-Length: "
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.reader, self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, body: bytes) -> tuple[int, bytes]:
        reader, writer = await self._connect()
        writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = await reader.readline()
        if not status_line:
            self.close()
            raise ConnectionError("server closed the connection")
        status = int(status_line.split(None, 2)[1])
        length = 0
        chunked = close = False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            content = b""
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                data = await reader.readexactly(size + 2)
                if size == 0:
                    break
                content += data[:-2]
        else:
            content = await reader.readexactly(length)
        if close:
            self.close()
        return status, content


async def drive(
    spec: LoadSpec,
) -> tuple[list[float], dict[str, int], int, str | None, float, int]:
    """Run the workers; returns (latencies in s, statuses, errors, an error, window length,
    requests still in flight when the window closed)."""
    bodies = [b.encode() for b in spec.bodies]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    error_sample: str | None = None
    start = time.perf_counter()
    measure_from = start + spec.warmup
    stop_at = measure_from + spec.duration
    last_done = measure_from
    late = 0
    closers: list[Callable[[], Awaitable[None] | None]] = []

    def make_sender() -> Sender:
        if spec.client == "httpx":
            return httpx_sender()
        conn = RawConnection(spec)
        closers.append(conn.close)
        return conn.send

    shared_client: Any = None

    def httpx_sender() -> Sender:
        nonlocal shared_client
        import httpx

        if shared_client is None:
            limits = httpx.Limits(
                max_connections=spec.connections, max_keepalive_connections=spec.connections
            )
            headers = {"content-type": "application/json", **spec.headers}
            shared_client = httpx.AsyncClient(limits=limits, timeout=spec.timeout, headers=headers)
            closers.append(shared_client.aclose)
        client = shared_client

        async def send(body: bytes) -> tuple[int, bytes]:
            response = await client.post(spec.url, content=body)
            return response.status_code, response.content

        return send

    async def worker(index: int) -> None:
        nonlocal errors, error_sample, last_done, late
        send = make_sender()
        i = index
        while True:
            began = time.perf_counter()
            if began >= stop_at:
                return
            body = bodies[i % len(bodies)]
            i += 1
            try:
                status, content = await asyncio.wait_for(send(body), spec.timeout)
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                status, content = 0, f"{type(exc).__name__}: {exc}".encode()
            except Exception as exc:  # httpx transport errors and the like
                status, content = 0, f"{type(exc).__name__}: {exc}".encode()
            done = time.perf_counter()
            if began < measure_from or done > stop_at:
                late += began >= measure_from
                continue
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status != 200:
                errors += 1
                if error_sample is None:
                    error_sample = f"{status}: {content[:300].decode(errors='replace')}"
                if status == 0:
                    await asyncio.sleep(0.01)  # do not spin on a dead server
                continue
            latencies.append(done - began)
            last_done = max(last_done, done)

    try:
        await asyncio.gather(*(worker(i) for i in range(spec.connections)))
    finally:
        for close in closers:
            result = close()
            if result is not None:
                with contextlib.suppress(Exception):
                    await result
    window = max(last_done - measure_from, 1e-9)
    return latencies, statuses, errors, error_sample, window, late


def run(spec: LoadSpec) -> LoadResult:
    """Drive the server as ``spec`` says, in this process."""
    if spec.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {spec.cpu})
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    wall_before = time.perf_counter()
    runner: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    latencies, statuses, errors, error_sample, window, late = runner(drive(spec))
    wall = time.perf_counter() - wall_before
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    latencies.sort()
    n = len(latencies)
    ms = 1000.0
    return LoadResult(
        requests=n,
        errors=errors,
        elapsed=window,
        rps=n / window,
        p50_ms=percentile(latencies, 0.50) * ms,
        p90_ms=percentile(latencies, 0.90) * ms,
        p99_ms=percentile(latencies, 0.99) * ms,
        max_ms=(latencies[-1] if latencies else float("nan")) * ms,
        mean_ms=(sum(latencies) / n if n else float("nan")) * ms,
        statuses=statuses,
        error_sample=error_sample,
        cpu_percent=100.0 * cpu / wall if wall > 0 else 0.0,
        in_flight=late,
    )


def main() -> None:
    spec = LoadSpec(**json.load(sys.stdin))
    json.dump(asdict(run(spec)), sys.stdout)


if __name__ == "__main__":
    main()
