"""The prediction log's writer: a bounded in-memory queue drained by one background thread.

``put`` never touches the database: it enqueues, or, when the queue is full, appends the record
to this process's spill file (fsynced) before returning. The thread writes whatever is queued,
up to ``batch_size`` records, in one transaction (a multi-row INSERT that skips rows already
stored), after waiting up to ``batch_wait`` for more to arrive. When that fails because the
database is unavailable, the batch is spilled; spilled records are replayed every
``replay_seconds`` (doubling up to 10 s while the database stays down) and as soon as a write
succeeds again. ``close`` writes what is queued, with a time limit, and spills the rest; the
next process to start on the data dir replays what is left.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from modelserve.core.db import Database
from modelserve.predictions.repository import PredictionRepository
from modelserve.predictions.schemas import PredictionRecord
from modelserve.predictions.spill import SpillStore

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 10.0
BATCH_WAIT_SECONDS = 0.05
"""How long a batch waits for more records once it has one (a flush or close cuts it short)."""
ORPHAN_SCAN_SECONDS = 30.0
"""How often a process looks for spill files left by dead processes (and once at start)."""


@dataclass(frozen=True)
class LogStats:
    """A snapshot of the writer's counters (since the process started)."""

    queue_depth: int
    queue_capacity: int
    written: int
    copied: int
    """Of ``written``, records written with COPY (PostgreSQL)."""
    spilled: int
    spill_pending: int
    replayed: int
    adopted: int
    rejected: int
    failed_batches: int
    batches: int
    batch_seconds: float


def _refused(exc: SQLAlchemyError) -> bool:
    """Whether the database refused the records themselves (a constraint or data error, or a
    value that cannot be bound), rather than being unavailable."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


class LogWriter:
    """Writes prediction-log records in batches on a background thread; see the module doc."""

    def __init__(
        self,
        db: Database,
        spill: SpillStore,
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        replay_seconds: float = 1.0,
        batch_wait: float = BATCH_WAIT_SECONDS,
    ) -> None:
        self.db = db
        self.spill = spill
        self.batch_size = batch_size
        self.replay_seconds = replay_seconds
        self.batch_wait = batch_wait
        self._copy = db.engine.dialect.name == "postgresql"
        self._queue: queue.Queue[PredictionRecord | None] = queue.Queue(queue_size)
        self._capacity = queue_size
        self._cond = threading.Condition()
        self._enqueued = 0
        self._processed = 0
        self._replay_wanted = False
        self._replays_started = self._replays_done = 0
        self._closed = False
        self._stopping = threading.Event()
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None
        self._inflight: list[PredictionRecord] = []
        self._stranded: list[PredictionRecord] = []
        """Records neither the database nor the disk took when shutdown began."""
        self._finished = False
        self._backoff = replay_seconds
        self._next_replay = 0.0
        self._next_scan = 0.0
        self._db_down = False
        self.written = self.copied = self.replayed = self.adopted = 0
        self.failed_batches = self.batches = 0
        self.batch_seconds = 0.0

    def stats(self) -> LogStats:
        """The counters now."""
        return LogStats(
            queue_depth=self._queue.qsize(),
            queue_capacity=self._capacity,
            written=self.written,
            copied=self.copied,
            spilled=self.spill.spilled,
            spill_pending=self.spill.pending,
            replayed=self.replayed,
            adopted=self.adopted,
            rejected=self.spill.rejected,
            failed_batches=self.failed_batches,
            batches=self.batches,
            batch_seconds=self.batch_seconds,
        )

    def start(self) -> None:
        """Start the thread; it first replays spill files left by dead processes."""
        self._thread = threading.Thread(target=self._run, name="modelserve-log", daemon=True)
        self._thread.start()

    def put(self, record: PredictionRecord) -> None:
        """Hand a record over without waiting for the database: queued, or appended to the
        spill file when the queue is full. Raises OSError only when that append fails too."""
        with self._cond:
            if not self._closed:
                try:
                    self._queue.put_nowait(record)
                except queue.Full:
                    pass
                else:
                    self._enqueued += 1
                    return
        if self._closed:  # after shutdown began: write it here and now
            self._write_now([record])
        else:
            self.spill.append([record])

    def _write_now(self, records: Sequence[PredictionRecord]) -> None:
        try:
            self._store(records)
        except SQLAlchemyError:
            self.spill.append(records)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record handed over before this call is in the database or the
        spill file and, if spilled records are waiting, for one attempt to replay them (so a
        client that predicted and then reads the log sees its predictions). True when done
        within ``timeout`` seconds."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return True
        with self._cond:
            target = self._enqueued
            replays = None
            if self.spill.pending:
                self._replay_wanted = True
                replays = self._replays_started + 1  # one that starts after this call
        self._wake()

        def done() -> bool:
            replayed = replays is None or self._replays_done >= replays
            return self._finished or (self._processed >= target and replayed)

        with self._cond:
            return self._cond.wait_for(done, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking records, write what is queued (giving up after ``timeout`` seconds and
        spilling the rest), try once more to replay spilled records, and stop the thread."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        self._stopping.set()
        self._wake()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        if thread is not None and thread.is_alive():
            # The database hangs: keep the batch in flight (perhaps written after all: replays
            # skip rows already stored) and everything still queued on disk.
            leftovers = self._stranded + self._inflight + self._drain()
            logger.warning(
                "prediction log: database too slow at shutdown; %d record(s) spilled to %s",
                len(leftovers),
                self.spill.directory,
            )
        else:
            leftovers = self._stranded + self._drain()
        try:
            self.spill.append(leftovers)
        except OSError:
            logger.critical(
                "prediction log: %d record(s) could neither be written nor spilled at shutdown",
                len(leftovers),
            )
        self.spill.close()

    def _wake(self) -> None:
        self._kick.set()
        with contextlib.suppress(queue.Full):  # if full, the thread is busy and looks again
            self._queue.put_nowait(None)

    def _drain(self) -> list[PredictionRecord]:
        records: list[PredictionRecord] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return records
            if item is not None:
                records.append(item)

    # The background thread.

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            batch = self._take(self._idle_seconds())
            if batch:
                self._write_batch(batch)
            stopping = self._stopping.is_set()
            if stopping and self._queue.empty():
                if self.spill.pending and not self._db_down:
                    self._replay(adopt=False)
                return
            now = time.monotonic()
            if self._replay_wanted or (self.spill.pending and now >= self._next_replay):
                self._replay(adopt=False)
            if now >= self._next_scan and not stopping:
                self._next_scan = now + ORPHAN_SCAN_SECONDS
                self._replay(adopt=True)

    def _idle_seconds(self) -> float:
        now = time.monotonic()
        due = self._next_scan
        if self.spill.pending:
            due = min(due, self._next_replay)
        return min(max(due - now, 0.0), 1.0)

    def _take(self, timeout: float) -> list[PredictionRecord]:
        # Up to batch_size records: the first within ``timeout``, then, unless a batch is already
        # waiting, whatever arrives within batch_wait (a lone record per transaction costs ~20
        # times the CPU of one among many; sleeping, not waking per record, keeps it cheap). A
        # flush or close cuts the wait short.
        try:
            first = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return []
        if first is not None and self._queue.qsize() < self.batch_size:
            self._kick.wait(self.batch_wait)
        self._kick.clear()
        return self._take_ready([] if first is None else [first])

    def _take_ready(self, batch: list[PredictionRecord]) -> list[PredictionRecord]:
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                batch.append(item)
        return batch

    def _write_batch(self, batch: list[PredictionRecord]) -> None:
        self._inflight = batch
        try:
            started = time.perf_counter()
            try:
                self._store_new(batch)
            except SQLAlchemyError as exc:
                self.failed_batches += 1
                self._database_down(exc, retried=False)
                self._spill_batch(batch)
            else:
                self.batches += 1
                self.batch_seconds += time.perf_counter() - started
                self.written += len(batch)
                if self._db_down:  # it is back: replay what was spilled meanwhile now
                    self._db_down = False
                    self._next_replay = 0.0
        finally:
            self._inflight = []
            with self._cond:
                self._processed += len(batch)
                self._cond.notify_all()

    def _spill_batch(self, batch: list[PredictionRecord]) -> None:
        # With neither the database nor the disk taking records, hold on to them and retry:
        # the queue fills up, and requests fail (503) once they cannot spill either.
        delay = self.replay_seconds
        while True:
            try:
                self.spill.append(batch)
                return
            except OSError as exc:
                logger.error("prediction log: cannot spill %d record(s): %s", len(batch), exc)
            if self._stopping.wait(delay):
                self._stranded.extend(batch)  # close() keeps them if it can
                return
            try:
                self._store(batch)
                self.written += len(batch)
                return
            except SQLAlchemyError:
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def _store_new(self, records: Sequence[PredictionRecord]) -> int:
        """``_store`` for records fresh from the queue: on PostgreSQL with COPY (a third of the
        CPU per row), falling back to the INSERT when any is refused or already stored."""
        if self._copy:
            try:
                with self.db.transaction() as session:
                    PredictionRepository(session).copy_new(records)
            except SQLAlchemyError as exc:
                if not _refused(exc):
                    raise
            else:
                self.copied += len(records)
                return len(records)
        return self._store(records)

    def _store(self, records: Sequence[PredictionRecord]) -> int:
        """Insert records in one transaction, skipping rows already stored; a record the
        database refuses is set aside (see SpillStore.reject) rather than holding back the
        others. Returns how many were stored; raises when the database is unavailable."""
        try:
            with self.db.transaction() as session:
                PredictionRepository(session).insert_ignoring_duplicates(records)
        except SQLAlchemyError as exc:
            if not _refused(exc):
                raise
            if len(records) == 1:
                self._reject(records, exc)
                return 0
            return sum(self._store([record]) for record in records)
        return len(records)

    def _reject(self, records: Sequence[PredictionRecord], exc: SQLAlchemyError) -> None:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        try:
            self.spill.reject(records, reason)
        except OSError:
            logger.critical(
                "prediction log: record %s refused by the database (%s) and not kept: %r",
                records[0].request_id,
                reason,
                records[0],
            )

    def _database_down(self, exc: SQLAlchemyError, *, retried: bool) -> None:
        # Only failed replays back off further: a failed batch says nothing new.
        now = time.monotonic()
        if not self._db_down:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logger.warning("prediction log: database unavailable (%s); spilling records", message)
            self._next_replay = now + self._backoff
        self._db_down = True
        if retried:
            self._next_replay = now + self._backoff
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)

    def _replay(self, *, adopt: bool) -> None:
        if not adopt:
            with self._cond:
                self._replays_started += 1
                self._replay_wanted = False
        try:
            if adopt:
                self.adopted += self.spill.adopt_orphans(self._store, self.batch_size)
            else:
                self.replayed += self.spill.replay_own(self._store, self.batch_size)
        except SQLAlchemyError as exc:
            self._database_down(exc, retried=True)
            if adopt:
                self._next_scan = time.monotonic() + self._backoff
        except OSError:
            logger.exception("prediction log: cannot read spill files")
        else:
            if not adopt:
                self._db_down = False
                self._backoff = self.replay_seconds
                self._next_replay = time.monotonic() + self.replay_seconds
        finally:
            if not adopt:
                with self._cond:
                    self._replays_done += 1
                    self._cond.notify_all()
