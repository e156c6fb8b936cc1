"""Instructions per request of each request form, in process, counted by callgrind.

CPU seconds on a shared virtual machine drift (up to 2x within minutes here), so a change of a
few percent cannot be told from noise by timing. Valgrind's callgrind counts the instructions
the process runs, which repeat to about 1% whatever else the machine does. This runs
``bench/request_cpu.py``'s app (authentication, validation, the SQLite prediction log, the log
writer's thread included) under callgrind, warms it up with instrumentation off, then counts
``--requests`` requests of one form (``callgrind_control`` switches instrumentation on and off
around them) and prints instructions per request. It is slow (about a minute per form; the
interpreter runs some 50x slower under valgrind), and an instruction count is not a time:
memory-bound work (``rep movsb`` copies, cache misses) weighs differently. The server's
background threads (the registry watcher's polls) run while the requests are counted, about 50x
slower under valgrind, and add a share that shrinks as ``--requests`` grows: compare counts
taken with the same ``--requests``.

Run: ``python bench/request_instructions.py [--model logreg] [--forms v1-columnar,v2,v2-binary]
[--rows 1] [--requests 300]``; needs valgrind (``apt-get install valgrind``). Not run in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import request_cpu as rc

WARM_UP = 200
_QUIET = {"stdout": subprocess.DEVNULL}


def _wait_for(path: Path, process: subprocess.Popen[bytes]) -> None:
    while not path.exists():
        if process.poll() is not None:
            raise SystemExit(f"the counted process ended early ({process.returncode})")
        time.sleep(0.2)


def count(form: str, args: argparse.Namespace) -> int:
    """Instructions per request of ``form``: the child below, run under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        flags, log = Path(tmp) / "flag", Path(tmp) / "valgrind.log"
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        command += [f"--callgrind-out-file={tmp}/callgrind.out", f"--log-file={log}"]
        command += [sys.executable, __file__, "--child", str(flags), "--forms", form]
        command += ["--model", args.model, "--rows", str(args.rows)]
        command += ["--requests", str(args.requests), "--out", str(args.out)]
        command += ["--database", args.database]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        _wait_for(flags.with_suffix(".ready"), process)
        subprocess.run(["callgrind_control", "-i", "on", str(process.pid)], check=True, **_QUIET)
        flags.with_suffix(".go").touch()
        _wait_for(flags.with_suffix(".done"), process)
        subprocess.run(["callgrind_control", "-i", "off", str(process.pid)], check=True, **_QUIET)
        flags.with_suffix(".end").touch()
        process.wait()
        found = re.search(r"Collected : ([\d,]+)", log.read_text())
        if found is None:
            raise SystemExit(f"no count in valgrind's log:\n{log.read_text()[-2000:]}")
        return int(found.group(1).replace(",", "")) // args.requests


async def _child(args: argparse.Namespace, workdir: Path, rows: list[list[float]]) -> None:
    """Warm up, say so, then run the counted requests between the parent's signals."""
    flags = Path(args.child)
    app = rc.create_app(rc.Settings())
    key = (workdir / rc.sbs.MS_ADMIN_KEY).read_text().strip()
    async with app.router.lifespan_context(app):
        writer = app.state.modelserve.log_writer
        path, body, extra = rc.profile_server.request_for(args.forms, args.model, rows)
        scope = rc._scope(path, {"X-API-Key": key, **extra}, len(body))
        for _ in range(WARM_UP):
            await rc._request(app, scope, body)
        writer.flush()
        flags.with_suffix(".ready").touch()
        while not flags.with_suffix(".go").exists():
            time.sleep(0.05)
        for _ in range(args.requests):
            await rc._request(app, scope, body)
        writer.flush()
        flags.with_suffix(".done").touch()
        while not flags.with_suffix(".end").exists():
            time.sleep(0.05)


def main() -> None:
    ap = rc.arguments(__doc__, rows=1)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out = args.out.resolve()
    meta = rc.profile_server.prepare(args.out, [args.model])
    if args.child is None:
        for form in args.forms.split(","):
            per_request = count(form, args)
            print(f"{form:12} {args.rows:3} row(s), {args.model}: {per_request:,} instructions")
        return
    rows = rc.request_rows(args, meta)
    workdir = rc.enter_data_dir(args.model, args.out, pg=args.database == "postgresql")
    asyncio.run(_child(args, workdir, rows))


if __name__ == "__main__":
    main()
