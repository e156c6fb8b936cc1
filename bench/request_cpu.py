"""CPU per request of each request form, in process: the whole ASGI app, no HTTP server.

The machine's speed drifts (up to 2x between minutes here), which a served benchmark reads as
a difference between the forms run one after the other; this one runs the forms in turn, twice,
in one process, through the app ``modelserve serve`` runs (authentication, validation, the
prediction log on SQLite), each request's body a fresh copy as from a socket, and prints the
event loop thread's CPU per request, the least of ``--repeats`` rounds of ``--requests``, and
the whole process's (the log writer thread's work included, each round's records written before
it ends: on one core, what bounds the requests per second). With ``--database postgresql`` the
log goes to PostgreSQL, whose processes' CPU per request is printed too (its backend does there
what SQLite's writer does in the server's process).

Run: ``python bench/request_cpu.py [--model logreg] [--forms v1-columnar,v2,v2-binary]
[--rows 100] [--database sqlite|postgresql]`` with the data dir ``bench/profile_server.py``
prepares (made here when missing: the model registered with its schema, an alias, an API key).
Not run in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "sidebyside"))
import profile_server  # noqa: E402  (the request forms, the data dir)
import run as sbs  # noqa: E402  (the side-by-side harness: data dir set-up)
from batching import cpu_seconds  # noqa: E402

from modelserve.app import create_app  # noqa: E402
from modelserve.config import Settings  # noqa: E402


def _scope(path: str, headers: dict[str, str], length: int) -> dict[str, Any]:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw += [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "root_path": "",
        "state": {},
    }


async def _request(app: Any, scope: dict[str, Any], body: bytes) -> None:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": bytes(bytearray(body)), "more_body": False}
        await asyncio.sleep(3600)  # a client that stays connected
        return {"type": "http.disconnect"}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(dict(scope), receive, send)
    if statuses != [200]:
        raise SystemExit(f"{scope['path']} answered {statuses}")


async def measure(args: argparse.Namespace, workdir: Path, meta: dict[str, Any]) -> None:
    """Each form in turn, twice: the least CPU per request of the event loop thread."""
    app = create_app(Settings())
    key = (workdir / sbs.MS_ADMIN_KEY).read_text().strip()
    rows = request_rows(args, meta)
    async with app.router.lifespan_context(app):
        writer = app.state.modelserve.log_writer
        gc.collect()
        gc.freeze()  # as the server's lifespan does
        for form in args.forms.split(",") * 2:
            path, body, extra = profile_server.request_for(form, args.model, rows)
            scope = _scope(path, {"X-API-Key": key, **extra}, len(body))
            for _ in range(args.requests // 2):
                await _request(app, scope, body)
            writer.flush()
            rounds, whole, database = [], [], []
            for _ in range(args.repeats):
                started, process = time.thread_time(), time.process_time()
                server = _postgres_cpu()
                for _ in range(args.requests):
                    await _request(app, scope, body)
                rounds.append((time.thread_time() - started) / args.requests * 1e6)
                writer.flush()
                whole.append((time.process_time() - process) / args.requests * 1e6)
                database.append((_postgres_cpu() - server) / args.requests * 1e6)
            shown = " ".join(f"{r:.0f}" for r in rounds)
            pg = f"; PostgreSQL {min(database):7.1f}" if args.database == "postgresql" else ""
            print(
                f"{form:12} {args.rows:3} row(s): {min(rounds):7.1f} us/request ({shown}); "
                f"process {min(whole):7.1f}{pg}"
            )


def _postgres_cpu() -> float:
    """CPU seconds the local PostgreSQL's processes have used (0 when none runs here): where
    the log's database work goes when it is not SQLite in this process."""
    seconds = 0.0
    for pid in sbs.postgres_pids():
        with contextlib.suppress(OSError):  # ended meanwhile
            seconds += cpu_seconds(pid)
    return seconds


def request_rows(args: argparse.Namespace, meta: dict[str, Any]) -> list[list[float]]:
    """The rows each request carries: ``--rows`` of the model's (``meta``: logreg's and hgb's
    meta.json; the demo model has its own)."""
    if args.model == "demo":
        meta = json.loads((args.out.resolve() / "models" / "demo.meta.json").read_text())
    rows: list[list[float]] = meta["batch_rows"] if args.rows == 100 else [meta["sample_row"]]
    return rows


def arguments(doc: str | None, rows: int) -> argparse.ArgumentParser:
    """The options this bench and ``request_instructions.py`` share (``rows``: the default)."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="logreg", help="logreg, hgb or demo")
    ap.add_argument("--forms", default="v1-columnar,v2,v2-binary")
    ap.add_argument("--rows", type=int, default=rows, choices=(1, 100))
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument(
        "--database",
        default="sqlite",
        choices=("sqlite", "postgresql"),
        help="the prediction log's database (postgresql: BENCH_PG_URL's server; request_cpu.py "
        "shows its processes' CPU per request too)",
    )
    return ap


def main() -> None:
    ap = arguments(__doc__, rows=100)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    out = args.out.resolve()
    meta = profile_server.prepare(out, [args.model])
    workdir = enter_data_dir(args.model, out, pg=args.database == "postgresql")
    asyncio.run(measure(args, workdir, meta))


def enter_data_dir(model: str, out: Path, *, pg: bool = False) -> Path:
    """Point this process's modelserve settings at ``model``'s data dir (made by
    ``profile_server.prepare``; logging to PostgreSQL with ``pg``), and work in it; the data
    dir."""
    workdir = profile_server.data_dir(model, out, pg=pg)
    for name, value in sbs.modelserve_env(workdir).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    os.chdir(workdir)
    return workdir


if __name__ == "__main__":
    main()
