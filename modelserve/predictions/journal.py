"""The prediction log's journal: every record in the kernel before its response leaves.

``LogWriter.put`` appends each record's JSON line to this process's journal with one
``os.write`` (no fsync by default: a killed process loses nothing the kernel holds; only a
machine crash can, and ``fsync_ms`` bounds that window) before it queues the record. The
journal lives in the spill directory under the spill store's owner (and its flock):
``<owner>.<n>.journal``, segments of about ``segment_bytes``.

Every record gets a sequence number. Once the writer has committed a record (or spilled it:
the spill file is fsynced), it calls ``done``: a segment whose records are all done is deleted
(the current one is truncated), which is the checkpoint. What is left when the process dies is
adopted like its spill files (``SpillStore.adopt_orphans``) and replayed skipping rows already
stored, so records committed just before the checkpoint are not stored twice.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from modelserve.predictions.spill import JOURNAL, SpillStore, fsync_dir, write_all

logger = logging.getLogger(__name__)

SEGMENT_BYTES = 4 * 1024 * 1024


@dataclass
class _Segment:
    path: Path
    fd: int
    first: int
    """Sequence number of its first record."""
    appended: int = 0
    done: int = 0
    size: int = 0
    dirty: bool = False


class Journal:
    """This process's journal; see the module doc. Thread-safe."""

    def __init__(
        self, spill: SpillStore, *, fsync_ms: int = 0, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self.spill = spill
        self.fsync_ms = fsync_ms
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._firsts: list[int] = []
        self._next = 0
        self._number = 0
        self._owner: str | None = None
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Records journaled and neither committed nor spilled yet."""
        with self._lock:
            return sum(s.appended - s.done for s in self._segments)

    def open(self) -> None:
        """Take the owner's lock and start the first segment (and the fsync thread)."""
        with self._lock:
            self._owner = self.spill.own()
            self._new_segment()
        if self.fsync_ms > 0:
            self._syncer = threading.Thread(
                target=self._sync_loop, name="modelserve-log-journal", daemon=True
            )
            self._syncer.start()

    def _new_segment(self) -> _Segment:
        assert self._owner is not None
        path = self.spill.directory / f"{self._owner}.{self._number}{JOURNAL}"
        self._number += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
        if self.fsync_ms > 0:  # the file's name must survive a machine crash too
            fsync_dir(self.spill.directory)
        segment = _Segment(path, fd, self._next)
        self._segments.append(segment)
        self._firsts.append(segment.first)
        return segment

    def append(self, line: bytes) -> int:
        """Append one JSON line (ending with a newline); returns its sequence number. OSError
        when the disk refuses it (then none of it is left in the journal)."""
        with self._lock:
            if not self._segments:
                raise OSError("the journal is closed")
            segment = self._segments[-1]
            if segment.size >= self.segment_bytes:
                segment = self._new_segment()
            try:
                written = os.write(segment.fd, line)
                if written < len(line):  # rare (a signal, a full disk): write the rest
                    write_all(segment.fd, line[written:])
            except OSError:
                with contextlib.suppress(OSError):  # leave no torn line behind
                    os.ftruncate(segment.fd, segment.size)
                raise
            segment.size += len(line)
            segment.appended += 1
            segment.dirty = True
            self._next += 1
            return self._next - 1

    def done(self, sequence_numbers: Iterable[int]) -> None:
        """These records are committed (or spilled): drop the segments now fully done."""
        with self._lock:
            if not self._segments:
                return
            for number in sequence_numbers:
                if number >= 0:
                    index = bisect.bisect_right(self._firsts, number) - 1
                    if index >= 0:
                        self._segments[index].done += 1
            self._checkpoint()

    def _checkpoint(self) -> None:
        while len(self._segments) > 1 and self._finished(self._segments[0]):
            segment = self._segments.pop(0)
            self._firsts.pop(0)
            os.close(segment.fd)
            segment.path.unlink(missing_ok=True)
        current = self._segments[-1]
        if current.size and self._finished(current):
            os.ftruncate(current.fd, 0)  # appends (O_APPEND) start again at 0
            current.size = 0

    @staticmethod
    def _finished(segment: _Segment) -> bool:
        return segment.done >= segment.appended

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.fsync_ms / 1000):
            self.sync()

    def sync(self) -> None:
        """fsync the segments written since the last sync (outside the lock: appends go on)."""
        with self._lock:
            fds = []
            for segment in self._segments:
                if segment.dirty:
                    segment.dirty = False
                    fds.append(os.dup(segment.fd))
        for fd in fds:
            try:
                os.fsync(fd)
            except OSError:
                logger.exception("prediction log: cannot fsync the journal")
            finally:
                os.close(fd)

    def close(self) -> None:
        """Stop; delete the segments when every record is done, else leave them (with the
        owner's lock file) for the next process to replay. Call before ``SpillStore.close``."""
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
            self.sync()
        with self._lock:
            left = sum(s.appended - s.done for s in self._segments)
            for segment in self._segments:
                os.close(segment.fd)
                if not left:
                    segment.path.unlink(missing_ok=True)
            if left:
                logger.warning(
                    "prediction log: %d journaled record(s) left for the next process", left
                )
            self._segments.clear()
            self._firsts.clear()
