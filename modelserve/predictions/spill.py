"""Spill files: where prediction-log records wait when the queue is full or the database is down.

Each process appends to its own JSON-lines file, ``<owner>.jsonl`` (owner: pid and a random
suffix), fsynced before the append returns, so workers never interleave writes and a record is
on disk before its request is answered. The owner holds an exclusive ``flock`` on
``<owner>.lock`` while it lives; a file whose lock can be taken belongs to a dead process and is
adopted (replayed) by whoever takes it.

Replaying renames the file to ``<owner>.replaying`` first (new appends start a fresh file),
inserts its records in batches that skip rows already stored, and deletes it only once every
batch has committed. A crash at any point leaves the file to be replayed again, which is harmless.

Records the database refuses outright (a constraint or data error, not an outage) are set aside
in ``rejected/<owner>.jsonl``, never replayed and always logged: nothing is dropped silently.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from modelserve.predictions.encoding import FIELDS, encode, escape_text
from modelserve.predictions.schemas import PredictionRecord

logger = logging.getLogger(__name__)

LIVE, REPLAYING, LOCK, JOURNAL = ".jsonl", ".replaying", ".lock", ".journal"
REJECTED_DIR = "rejected"

SpillWrite = Callable[[Sequence[PredictionRecord]], int]
"""Stores records in one transaction, skipping duplicates; returns how many it stored (the rest
were set aside); raises when the database cannot take them now."""


def dumps(record: PredictionRecord) -> bytes:
    """One record as a JSON line (without the newline), escaped if need be; never raises."""
    return encode(record)[1][:-1]


def loads(line: bytes) -> PredictionRecord:
    """The record a JSON line holds; ValueError, TypeError or KeyError when it holds none."""
    data: dict[str, Any] = orjson.loads(line)
    values = {name: data[name] for name in FIELDS if name in data}
    values["request_id"] = uuid.UUID(data["request_id"])
    values["created_at"] = datetime.fromisoformat(data["created_at"])
    return PredictionRecord(**values)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpillStore:
    """This process's spill file, and the orphaned ones of dead processes. Thread-safe."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.owner: str | None = None
        """Set when this process first spills (and holds the lock of) its own file."""
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._pending = 0
        self.spilled = 0
        self.rejected = 0

    @property
    def pending(self) -> int:
        """Records in this process's spill files, waiting to be replayed."""
        return self._pending

    def _path(self, owner: str, suffix: str) -> Path:
        return self.directory / f"{owner}{suffix}"

    def own(self) -> str:
        """This process's owner name, taking its lock first if need be (see the journal)."""
        with self._lock:
            return self._own_lock()

    def _own_lock(self) -> str:
        # The lock is taken on a temporary name and renamed into place, so no other process can
        # ever see this owner's lock file unlocked while it lives.
        if self.owner is not None and self._lock_fd is not None:
            return self.owner
        self.directory.mkdir(parents=True, exist_ok=True)
        owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        temporary = self.directory / f".{owner}{LOCK}.tmp"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.replace(temporary, self._path(owner, LOCK))
        self.owner, self._lock_fd = owner, fd
        return owner

    def append(self, records: Sequence[PredictionRecord]) -> None:
        """Append records and fsync; OSError when the disk refuses them (then nothing of them
        is left in the file)."""
        if not records:
            return
        data = b"".join(dumps(record) + b"\n" for record in records)
        with self._lock:
            owner = self._own_lock()
            if self._fd is None:
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
                self._fd = os.open(self._path(owner, LIVE), flags, 0o600)
                fsync_dir(self.directory)
            offset = os.lseek(self._fd, 0, os.SEEK_END)
            try:
                write_all(self._fd, data)
                os.fsync(self._fd)
            except OSError:
                try:  # leave no torn line behind for the next append to follow
                    os.ftruncate(self._fd, offset)
                except OSError:
                    logger.exception("could not truncate the spill file after a failed append")
                raise
            self._pending += len(records)
            self.spilled += len(records)

    def replay_own(self, write: SpillWrite, batch_size: int) -> int:
        """Replay this process's spilled records; returns how many were stored. Raises what
        ``write`` raises, leaving the rest to be replayed later."""
        if self.owner is None:
            return 0
        owner, stored = self.owner, 0
        replaying = self._path(owner, REPLAYING)
        if replaying.exists():  # an earlier attempt failed half-way
            stored += self._replay_own_file(replaying, write, batch_size)
        with self._lock:
            live = self._path(owner, LIVE)
            if self._fd is None or os.fstat(self._fd).st_size == 0:
                return stored
            os.close(self._fd)
            self._fd = None
            os.replace(live, replaying)
            fsync_dir(self.directory)
        return stored + self._replay_own_file(replaying, write, batch_size)

    def _replay_own_file(self, path: Path, write: SpillWrite, batch_size: int) -> int:
        read, stored = self._replay_file(path, write, batch_size)
        with self._lock:
            self._pending = max(0, self._pending - read)
        return stored

    def adopt_orphans(self, write: SpillWrite, batch_size: int) -> int:
        """Replay the spill files of dead processes; returns how many records were stored.
        Raises what ``write`` raises (the orphan stays for a later attempt)."""
        if not self.directory.is_dir():
            return 0
        owners = set()
        for entry in os.scandir(self.directory):
            if entry.is_file() and not entry.name.startswith("."):
                owner, _, suffix = entry.name.rpartition(".")
                if f".{suffix}" == JOURNAL:
                    owner = owner.partition(".")[0]
                if f".{suffix}" in (LIVE, REPLAYING, LOCK, JOURNAL) and owner != self.owner:
                    owners.add(owner)
        return sum(self._adopt(owner, write, batch_size) for owner in sorted(owners))

    def _adopt(self, owner: str, write: SpillWrite, batch_size: int) -> int:
        lock_path = self._path(owner, LOCK)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # its process is alive and replays its own file
            try:
                if os.stat(lock_path).st_ino != os.fstat(fd).st_ino:
                    return 0  # another process adopted it meanwhile
            except FileNotFoundError:
                return 0
            stored = 0
            for path in self._leftovers(owner):
                stored += self._replay_file(path, write, batch_size)[1]
            lock_path.unlink()
            if stored:
                logger.info("replayed %d prediction-log records spilled by %s", stored, owner)
            return stored
        finally:
            os.close(fd)

    def _leftovers(self, owner: str) -> list[Path]:
        """An owner's files still to replay: spill files, then journal segments in order."""
        paths = [p for p in (self._path(owner, REPLAYING), self._path(owner, LIVE)) if p.exists()]
        segments = self.directory.glob(f"{owner}.*{JOURNAL}")
        return paths + sorted(segments, key=lambda p: int(p.name.split(".")[1]))

    def _replay_file(self, path: Path, write: SpillWrite, batch_size: int) -> tuple[int, int]:
        # (records read, records stored); the file is deleted once every batch has committed.
        read = stored = 0
        for batch in _batches(path, batch_size):
            stored += write(batch)
            read += len(batch)
        path.unlink()
        fsync_dir(self.directory)
        return read, stored

    def reject(self, records: Sequence[PredictionRecord], reason: str) -> None:
        """Set aside records the database refuses (never replayed); logged as errors."""
        directory = self.directory / REJECTED_DIR
        directory.mkdir(parents=True, exist_ok=True)
        head = b'{"reason":' + orjson.dumps(escape_text(reason)) + b',"record":'
        lines = b"".join(head + dumps(r) + b"}\n" for r in records)
        path = directory / f"{os.getpid()}.jsonl"
        with self._lock:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                write_all(fd, lines)
                os.fsync(fd)
            finally:
                os.close(fd)
            self.rejected += len(records)
        logger.error(
            "the database refused %d prediction-log record(s) (%s); kept in %s",
            len(records),
            reason,
            path,
        )

    def close(self) -> None:
        """Close the file; drop the lock file when nothing is left to replay. Whatever is left
        is adopted by the next process that starts on this data dir (appending again later
        starts a new file under a new owner)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._lock_fd is None or self.owner is None:
                return
            owner = self.owner
            if not self._leftovers(owner):
                self._path(owner, LOCK).unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None
            self.owner = None


def _batches(path: Path, size: int) -> Iterator[list[PredictionRecord]]:
    batch: list[PredictionRecord] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip(b" \t\r\n\x00"):
                continue  # blank, or a journal segment's zeros past its last line
            try:
                batch.append(loads(line))
            except (ValueError, TypeError, KeyError) as exc:
                # Only a crash in the middle of an append leaves such a line, and that append
                # was never acknowledged (its request failed).
                logger.warning("%s:%d: unreadable spill line skipped (%s)", path, number, exc)
                continue
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch
