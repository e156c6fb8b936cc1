"""What request ids and SQLite's page size cost the prediction log: random (UUID 4) against
time-ordered (UUID 7) ids, 4 KB (SQLite's default) against 16 KB pages (``SQLITE_PAGE_BYTES``).

A SQLite table shaped like ``predictions`` (WAL, synchronous=NORMAL; its unique index on
(request_id, variant) and the four others) takes batches of 75 records, as the log writer
writes them, after ``--prefill`` records; it prints the writing thread's CPU per record for each
kind of id and page size. The records' ``inputs`` text is ``--bytes`` long (700: one row of 30
features; about 25,000: 100 rows). Run: ``python bench/log_request_ids.py [--bytes 700]
[--prefill 0,200000] [--ids uuid4,uuid7] [--page-sizes 4096,16384]``. Not run in CI.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from modelserve.core.ids import new_request_id

_SCHEMA = [
    "create table p (id integer primary key, request_id char(32), model_id int, version_id int,"
    " user_id int, variant varchar(16), inputs text, created_at text)",
    "create unique index u on p(request_id, variant)",
    "create index a on p(model_id, created_at, id)",
    "create index b on p(created_at, id)",
    "create index v on p(version_id)",
    "create index us on p(user_id)",
]
_INSERT = (
    "insert into p(request_id, model_id, version_id, user_id, variant, inputs, created_at)"
    " values (?,?,?,?,?,?,?)"
)


def cpu_per_record(
    make_id: Callable[[], uuid.UUID],
    path: Path,
    prefill: int,
    records: int,
    inputs: str,
    page_size: int = 4096,
) -> float:
    """Microseconds of this thread's CPU per record written after ``prefill`` records."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(f"PRAGMA page_size={page_size}")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    for statement in _SCHEMA:
        connection.execute(statement)

    def batch(size: int) -> None:
        rows = [
            (make_id().hex, 1, 1, 1, "primary", inputs, f"{time.time():.6f}") for _ in range(size)
        ]
        connection.execute("begin")
        connection.executemany(_INSERT, rows)
        connection.execute("commit")

    for _ in range(prefill // 500):
        batch(500)
    started = time.thread_time()
    for _ in range(records // 75):
        batch(75)
    spent = time.thread_time() - started
    connection.close()
    return spent / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=700)
    parser.add_argument("--prefill", default="0,200000")
    parser.add_argument("--records", type=int, default=15000)
    parser.add_argument("--ids", default="uuid4,uuid7")
    parser.add_argument("--page-sizes", default="4096,16384")
    args = parser.parse_args()
    inputs = "[" + ",".join(["0.123456789"] * (args.bytes // 12)) + "]"
    kinds: dict[str, Callable[[], uuid.UUID]] = {"uuid4": uuid.uuid4, "uuid7": new_request_id}
    pages = [int(n) for n in args.page_sizes.split(",")]
    for prefill in [int(n) for n in args.prefill.split(",")]:
        spent = {}
        for name in args.ids.split(","):
            for page in pages:
                with tempfile.TemporaryDirectory() as tmp:
                    spent[f"{name} {page // 1024} KB"] = cpu_per_record(
                        kinds[name], Path(tmp) / "log.db", prefill, args.records, inputs, page
                    )
        shown = ", ".join(f"{name} {us:.1f} us" for name, us in spent.items())
        print(f"{args.bytes}-byte inputs after {prefill} records: {shown} per record")


if __name__ == "__main__":
    main()
