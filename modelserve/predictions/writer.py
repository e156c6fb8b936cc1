"""The prediction log's writer: a bounded in-memory queue drained by one background thread.

``put`` never touches the database: it appends the record to this process's journal (a copy into
a memory-mapped file, see journal.py) and enqueues it, or, when the queue is full, appends it to
this process's spill file (fsynced) before returning. The thread writes whatever is queued, up
to ``batch_size`` records, in one transaction (a multi-row INSERT that skips rows already
stored), after waiting up to ``batch_wait`` for more to arrive. When that fails because the
database is unavailable, the batch is spilled; spilled records are replayed every
``replay_seconds`` (doubling up to 10 s while the database stays down) and as soon as a write
succeeds again. ``close`` writes what is queued, with a time limit, and spills the rest; the
next process to start on the data dir replays what is left.

One record never stops the writer: records are escaped when need be (encoding.py), a record the
database refuses is isolated (store.py), and the thread is supervised: an unexpected error is
logged and counted and the loop goes on; a thread that died anyway is started again by the next
``put`` or ``flush``. ``alive`` and ``restarts`` say so (in /readyz and /metrics).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterable, Sequence

from sqlalchemy.exc import SQLAlchemyError

from modelserve.core.db import Database
from modelserve.predictions.encoding import encode
from modelserve.predictions.journal import Journal
from modelserve.predictions.replay import MAX_BACKOFF_SECONDS, Replayer
from modelserve.predictions.schemas import PredictionRecord
from modelserve.predictions.spill import SpillStore
from modelserve.predictions.store import LogStats, RecordStore

logger = logging.getLogger(__name__)

BATCH_WAIT_SECONDS = 0.05
"""How long a batch waits for more records once it has one (a flush or close cuts it short)."""

Item = tuple[PredictionRecord, int]
"""A queued record and its journal sequence number (-1: not journaled)."""


def _records(items: Iterable[Item]) -> list[PredictionRecord]:
    return [record for record, _ in items]


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
        journal: Journal | None = None,
    ) -> None:
        self.db = db
        self.spill = spill
        self.journal = journal
        self.store = RecordStore(db, spill)
        self.batch_size = batch_size
        self.replay_seconds = replay_seconds
        self.batch_wait = batch_wait
        self._queue: queue.Queue[Item | None] = queue.Queue(queue_size)
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
        self._inflight: list[Item] = []
        self._stranded: list[Item] = []
        """Records neither the database nor the disk took when shutdown began."""
        self._finished = False
        self.replays = Replayer(spill, self.store, batch_size=batch_size, seconds=replay_seconds)
        self.written = self.restarts = self.escaped = 0
        self.failed_batches = self.batches = 0
        self.batch_seconds = 0.0

    def stats(self) -> LogStats:
        """The counters now."""
        return LogStats(
            queue_depth=self._queue.qsize(),
            queue_capacity=self._capacity,
            written=self.written,
            copied=self.store.copied,
            spilled=self.spill.spilled,
            spill_pending=self.spill.pending,
            replayed=self.replays.replayed,
            adopted=self.replays.adopted,
            rejected=self.spill.rejected,
            escaped=self.store.escaped + self.escaped,
            failed_batches=self.failed_batches,
            batches=self.batches,
            batch_seconds=self.batch_seconds,
            journal_pending=0 if self.journal is None else self.journal.pending,
            writer_alive=self.alive,
            writer_restarts=self.restarts,
        )

    @property
    def alive(self) -> bool:
        """Whether the thread runs (False before ``start`` and after ``close``)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Open the journal and start the thread; it first replays spill files left by dead
        processes."""
        if self.journal is not None:
            self.journal.open()
        self._start_thread()

    def _start_thread(self) -> None:
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="modelserve-log", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        # Cheap enough for every put: the thread only dies of what _run cannot catch.
        thread = self._thread
        if thread is None or thread.is_alive() or self._closed:
            return
        with self._cond:
            if self._thread is thread and not self._closed:
                self.restarts += 1
                logger.error("prediction log: the writer thread had died; starting it again")
                self._start_thread()

    def put(self, record: PredictionRecord) -> None:
        """Hand a record over without waiting for the database: journaled and queued, or
        appended to the spill file when the queue is full. Raises OSError only when the record
        can be kept nowhere."""
        self._supervise()
        number = -1
        if self.journal is not None and not self._closed:
            record, line, was_escaped = encode(record)
            self.escaped += was_escaped
            try:
                number = self.journal.append(line)
            except OSError:
                logger.exception("prediction log: cannot append to the journal; spilling")
                self.spill.append([record])
                return
        with self._cond:
            if not self._closed:
                try:
                    self._queue.put_nowait((record, number))
                except queue.Full:
                    pass
                else:
                    self._enqueued += 1
                    return
        if self._closed:  # after shutdown began: write it here and now
            self._write_now([record])
        else:
            self.spill.append([record])
        self._done([(record, number)])

    def _write_now(self, records: Sequence[PredictionRecord]) -> None:
        try:
            self.store.store(records)
        except SQLAlchemyError:
            self.spill.append(records)

    def _done(self, items: Iterable[Item]) -> None:
        # Committed or spilled: the journal may forget them (a checkpoint).
        if self.journal is not None:
            try:
                self.journal.done(number for _, number in items)
            except OSError:
                logger.exception("prediction log: cannot checkpoint the journal")

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record handed over before this call is in the database or the
        spill file and, if spilled records are waiting, for one attempt to replay them (so a
        client that predicted and then reads the log sees its predictions). True when done
        within ``timeout`` seconds."""
        self._supervise()
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
            self.spill.append(_records(leftovers))
            self._done(leftovers)
        except OSError:
            logger.critical(
                "prediction log: %d record(s) could neither be written nor spilled at shutdown "
                "(the journal keeps them for the next process)",
                len(leftovers),
            )
        if self.journal is not None:
            self.journal.close()
        self.spill.close()

    def _wake(self) -> None:
        self._kick.set()
        with contextlib.suppress(queue.Full):  # if full, the thread is busy and looks again
            self._queue.put_nowait(None)

    def _drain(self) -> list[Item]:
        records: list[Item] = []
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
            while True:
                try:
                    self._loop()
                    return
                except Exception:
                    self.restarts += 1
                    logger.exception("prediction log: the writer failed; it goes on")
                    if self._stopping.wait(min(self.replay_seconds, 1.0)):
                        return  # close() spills what is left
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            batch = self._take(self.replays.idle_seconds())
            if batch:
                self._write_batch(batch)
            stopping = self._stopping.is_set()
            if stopping and self._queue.empty():
                if self.spill.pending and not self.replays.db_down:
                    self._replay()
                return
            now = time.monotonic()
            if self._replay_wanted or self.replays.own_due(now):
                self._replay()
            if not stopping and self.replays.scan_due(now):
                self.replays.replay(adopt=True)

    def _take(self, timeout: float) -> list[Item]:
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

    def _take_ready(self, batch: list[Item]) -> list[Item]:
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                batch.append(item)
        return batch

    def _write_batch(self, batch: list[Item]) -> None:
        self._inflight = batch
        try:
            started = time.perf_counter()
            try:
                self.store.store_new(_records(batch))
            except SQLAlchemyError as exc:
                self.failed_batches += 1
                self.replays.database_down(exc, retried=False)
                self._spill_batch(batch)
            except Exception:  # a defect, not a record (RecordStore isolates those): keep them
                self.failed_batches += 1
                logger.exception("prediction log: cannot write a batch; spilling it")
                self._spill_batch(batch)
            else:
                self._done(batch)
                self.batches += 1
                self.batch_seconds += time.perf_counter() - started
                self.written += len(batch)
                self.replays.database_back()
        finally:
            self._inflight = []
            with self._cond:
                self._processed += len(batch)
                self._cond.notify_all()

    def _spill_batch(self, batch: list[Item]) -> None:
        # With neither the database nor the disk taking records, hold on to them and retry:
        # the queue fills up, and requests fail (503) once they cannot spill either.
        delay = self.replay_seconds
        records = _records(batch)
        while True:
            try:
                self.spill.append(records)
                self._done(batch)
                return
            except OSError as exc:
                logger.error("prediction log: cannot spill %d record(s): %s", len(batch), exc)
            if self._stopping.wait(delay):
                self._stranded.extend(batch)  # close() keeps them if it can
                return
            try:
                self.store.store(records)
                self.written += len(batch)
                self._done(batch)
                return
            except SQLAlchemyError:
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def _replay(self) -> None:
        with self._cond:
            self._replays_started += 1
            self._replay_wanted = False
        try:
            self.replays.replay(adopt=False)
        finally:
            with self._cond:
                self._replays_done += 1
                self._cond.notify_all()
