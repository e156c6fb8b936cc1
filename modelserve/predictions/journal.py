"""The prediction log's journal: every record in the kernel before its response leaves.

``LogWriter.put`` copies each record's JSON line into this process's journal before it queues the
record (no fsync by default: a killed process loses nothing the kernel holds; only a machine
crash can, and ``fsync_ms`` bounds that window). The journal lives in the spill directory under
the spill store's owner (and its flock): ``<owner>.<n>.journal``, segments of ``segment_bytes``.

A segment is a file of that size, its blocks allocated up front (``posix_fallocate``: a full
disk refuses a new segment, an ``OSError``, instead of failing a write into the map), mapped
into memory: an append is a copy into the map, with no system call. An ``os.write`` per record
cost the event loop more than the call itself: it releases the GIL, which the log writer thread,
busy with a batch, then holds for up to the switch interval (bench/journal.py, in process:
``put`` went from 69-80 us to 40-56 us per record, 18 of them making the line). The pages are
the file's own page cache, so a killed process leaves them to the kernel exactly as written;
past the last line the file holds zeros, which replay skips, and a line cut short by a kill in
the middle of its copy (its request never answered) is skipped as unreadable.

Every record gets a sequence number. Once the writer has committed a record (or spilled it: the
spill file is fsynced), it calls ``done``: a segment whose records are all done is zeroed where
lines were, which is the checkpoint; an older one is then kept as a spare (up to ``SPARES``),
renamed and used again as a next segment (one more is deleted). Under load some records are
always pending, so the current segment fills and a next one is needed every few hundred
records: a fresh file's pages fault in on first write, 25 us per 22 KB record here against 1 us
into pages already mapped (``bench/journal.py``). What is left when the process dies is adopted
like its spill files (``SpillStore.adopt_orphans``) and replayed skipping rows already stored,
so records committed just before the checkpoint are not stored twice.
"""

from __future__ import annotations

import bisect
import logging
import mmap
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from modelserve.predictions.spill import JOURNAL, SpillStore, fsync_dir

logger = logging.getLogger(__name__)

SEGMENT_BYTES = 4 * 1024 * 1024
SPARES = 8
"""Done segments kept, zeroed, for the next ones (at most 32 MB of the spill directory). Under
load the log writer commits several segments' worth behind the appends, so several finish
together: with one spare kept, most new segments were fresh files here (14 of 17 over 2,000
100-row requests in process), whose pages fault in on first write, a mean 30 us per 30 KB
append; with eight, every segment after the first few is a reused one, 6 us."""


@dataclass
class _Segment:
    path: Path
    fd: int
    map: mmap.mmap
    capacity: int
    first: int
    """Sequence number of its first record."""
    appended: int = 0
    done: int = 0
    size: int = 0
    dirty: bool = False

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


class Journal:
    """This process's journal; see the module doc. Thread-safe."""

    def __init__(
        self,
        spill: SpillStore,
        *,
        fsync_ms: int = 0,
        segment_bytes: int = SEGMENT_BYTES,
        spares: int = SPARES,
    ) -> None:
        self.spill = spill
        self.fsync_ms = fsync_ms
        self.segment_bytes = segment_bytes
        self.spares = spares
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._firsts: list[int] = []
        self._spares: list[_Segment] = []
        """Done segments, zeroed, for the next ones (their pages stay mapped)."""
        self._zeros = b""
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

    def _new_segment(self, least: int = 0) -> _Segment:
        assert self._owner is not None
        path = self.spill.directory / f"{self._owner}.{self._number}{JOURNAL}"
        capacity = max(self.segment_bytes, least)
        if self._spares and capacity == self.segment_bytes:
            spare = self._spares.pop()
            os.rename(spare.path, path)  # zeroed already: its name only orders replay
            return self._add(_Segment(path, spare.fd, spare.map, capacity, self._next))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            # Zeros on blocks the file owns: a full disk refuses them here (OSError), where a
            # write into a map of a file with holes would kill the process instead.
            os.posix_fallocate(fd, 0, capacity)
            mapped = mmap.mmap(fd, capacity)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return self._add(_Segment(path, fd, mapped, capacity, self._next))

    def _add(self, segment: _Segment) -> _Segment:
        self._number += 1
        if self.fsync_ms > 0:  # the file's name must survive a machine crash too
            fsync_dir(self.spill.directory)
        self._segments.append(segment)
        self._firsts.append(segment.first)
        return segment

    def append(self, line: bytes) -> int:
        """Append one JSON line (ending with a newline); returns its sequence number. OSError
        when the disk refuses a new segment (then none of it is in the journal)."""
        with self._lock:
            if not self._segments:
                raise OSError("the journal is closed")
            segment = self._segments[-1]
            end = segment.size + len(line)
            if end > segment.capacity:
                segment = self._new_segment(len(line))
                end = len(line)
            segment.map[segment.size : end] = line
            segment.size = end
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
            if len(self._spares) < self.spares and segment.capacity == self.segment_bytes:
                self._zero(segment)
                self._spares.append(segment)
            else:
                segment.close()
                segment.path.unlink(missing_ok=True)
        current = self._segments[-1]
        if current.size and self._finished(current):
            self._zero(current)

    def _zero(self, segment: _Segment) -> None:
        # Zeros again where lines were (the blocks stay allocated, the file its size, its
        # pages mapped); a kill in the middle leaves done lines behind, which replay skips as
        # stored.
        if len(self._zeros) < segment.size:
            self._zeros = bytes(segment.size)
        segment.map[: segment.size] = memoryview(self._zeros)[: segment.size]
        segment.size = 0

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
                segment.close()
                if not left:
                    segment.path.unlink(missing_ok=True)
            if left:
                logger.warning(
                    "prediction log: %d journaled record(s) left for the next process", left
                )
            self._segments.clear()
            self._firsts.clear()
            for spare in self._spares:
                spare.close()
                spare.path.unlink(missing_ok=True)
            self._spares.clear()
