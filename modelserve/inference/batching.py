"""Adaptive batching: concurrent requests for one version merged into one model call.

Off unless a model's serving settings say ``{"batching": {"max_batch_size": N, "max_wait_ms":
W}}``. Then every request for one of its versions, once validated, is queued on that version's
``Batcher`` (one per version and runtime) and its caller waits on a future. The batcher's
collector thread runs this loop:

1. Wait until a request is queued; take the oldest.
2. Add queued requests, oldest first, while the rows in the batch stay within ``max_batch_size``
   (a request is never split: one larger than the limit runs alone; one that would not fit waits
   for the next batch, first in line).
3. When the queue is empty and the batch is not full, wait for more only while another request
   for this version is on its way (admitted and being validated: ``reserve`` was called for it
   and it has not been queued yet) and the oldest request in the batch has waited less than
   ``max_wait_ms``. With nothing on its way the batch runs at once: at low load batching adds no
   wait, and a lone request costs one hand-over between threads.
4. Run the batch: its columns concatenated, one ``predict`` call, the result cut by row ranges
   back to each request. Requests that arrive while that call runs queue up and form the next
   batch, so under load batches grow with the arrival rate, by themselves.
5. If the merged call fails, no request is failed for another's rows. When the failure names its
   rows (``non_finite_output``), the requests owning them run alone (their answer is their own
   error, with their own row numbers) and the rest run merged again; any other failure (a model
   exception) runs every request alone. Each request gets exactly what it would have got alone.

Each request's completion (logging its outcome, then handing over its shadow run) is called on
the collector thread before its future is resolved, one request after another, so every request
is logged once, with its own outputs and latency, before its caller is answered.

The model call runs on the collector thread, not on the ``INFERENCE_THREADS`` pool: callers on
the event loop await the future without holding a worker thread, so the number of requests that
can wait in one batch is not bounded by that pool. A collector with nothing to do for
``IDLE_SECONDS`` ends, and the next request starts a new one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from modelserve.core.errors import ValidationFailed
from modelserve.inference.predictor import PredictionResult
from modelserve.inference.validation import ValidatedBatch
from modelserve.registry.schemas import BatchingSettings

IDLE_SECONDS = 30.0
"""A collector thread with nothing queued this long ends (a new request starts another)."""

T = TypeVar("T")

Outcome = PredictionResult | BaseException
"""What a request's rows gave: the model's answer for them, or what stopped it."""


class BatchPredictor(Protocol):
    """What a batcher calls: ``Predictor`` or ``OnnxPredictor``."""

    def predict(self, batch: ValidatedBatch) -> PredictionResult: ...  # pragma: no cover


@dataclass(eq=False)
class _Request:
    batch: ValidatedBatch
    predictor: BatchPredictor
    max_rows: int
    max_wait: float
    enqueued: float
    complete: Callable[[Outcome], Any]
    future: Future[Any] = field(default_factory=Future)


@dataclass(frozen=True)
class BatcherStats:
    """One batcher's counters since it was created."""

    requests: int
    """Requests queued."""
    rows: int
    model_calls: int
    """Every ``predict`` call: merged, single and fallback."""
    merged_calls: int
    """Calls that served more than one request."""
    merged_requests: int
    """Requests answered by a merged call."""
    fallbacks: int
    """Merged calls that failed and were split up."""
    largest_batch: int
    """Most requests answered by one call."""
    largest_rows: int
    """Most rows in one call (at most ``max_batch_size``, or one larger request alone)."""
    queued: int
    """Requests waiting for a batch now."""
    reserved: int
    """Requests on their way now (admitted, being validated)."""


class Batcher:
    """Merges the concurrent requests of one version (and runtime) into few model calls."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._queue: deque[_Request] = deque()
        self._reserved = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._requests = 0
        self._rows = 0
        self._calls = 0
        self._merged_calls = 0
        self._merged_requests = 0
        self._fallbacks = 0
        self._largest = 0
        self._largest_rows = 0

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called (requests then run on their caller's thread)."""
        return self._closed

    def reserve(self) -> None:
        """Say a request for this version is on its way (it is being validated): a batch that is
        not full waits for it, up to its ``max_wait``. Follow with ``submit`` or ``cancel``."""
        with self._cond:
            self._reserved += 1

    def cancel(self) -> None:
        """The reserved request will not come (it was refused)."""
        with self._cond:
            self._reserved -= 1
            self._cond.notify_all()

    def submit(
        self,
        batch: ValidatedBatch,
        predictor: BatchPredictor,
        settings: BatchingSettings,
        complete: Callable[[Outcome], T],
        *,
        reserved: bool = False,
    ) -> Future[T]:
        """Queue validated rows; the future resolves to what ``complete`` returns for their
        outcome (or raises what it raised). ``reserved``: this request called ``reserve``."""
        request = _Request(
            batch=batch,
            predictor=predictor,
            max_rows=settings.max_batch_size,
            max_wait=settings.max_wait_ms / 1000.0,
            enqueued=time.monotonic(),
            complete=complete,
        )
        request.future.set_running_or_notify_cancel()  # cannot be cancelled: it will be logged
        with self._cond:
            if reserved:
                self._reserved -= 1
            self._requests += 1
            self._rows += batch.n_rows
            if self._closed:
                inline = True
            else:
                inline = False
                self._queue.append(request)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._collect, name=f"modelserve-batch-{self.name}", daemon=True
                    )
                    self._thread.start()
                self._cond.notify_all()
        if inline:  # shutting down: no collector any more, answer on the caller's thread
            self._run([request])
        return request.future

    def stats(self) -> BatcherStats:
        """A snapshot of the counters."""
        with self._cond:
            return BatcherStats(
                requests=self._requests,
                rows=self._rows,
                model_calls=self._calls,
                merged_calls=self._merged_calls,
                merged_requests=self._merged_requests,
                fallbacks=self._fallbacks,
                largest_batch=self._largest,
                largest_rows=self._largest_rows,
                queued=len(self._queue),
                reserved=self._reserved,
            )

    def close(self, timeout: float = 10.0) -> None:
        """Answer what is queued, then stop the collector; later requests run on their caller's
        thread."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)

    def _collect(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    if self._closed:
                        self._thread = None
                        return
                    if not self._cond.wait(IDLE_SECONDS) and not self._queue:
                        self._thread = None
                        return
                batch = self._gather()
            try:
                self._run(batch)
            except Exception as exc:  # a bug here must not leave callers waiting forever
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)

    def _gather(self) -> list[_Request]:
        """The next batch (called holding the lock, with a request queued)."""
        first = self._queue.popleft()
        batch = [first]
        rows = first.batch.n_rows
        deadline = first.enqueued + first.max_wait
        while rows < first.max_rows:
            if self._queue:
                candidate = self._queue[0]
                if (
                    candidate.predictor is not first.predictor
                    or rows + candidate.batch.n_rows > first.max_rows
                ):
                    break
                batch.append(self._queue.popleft())
                rows += candidate.batch.n_rows
                continue
            if self._reserved <= 0 or self._closed:
                break  # nothing on its way: run now
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        return batch

    def _run(self, requests: list[_Request]) -> None:
        """Answer ``requests`` with one call, or with as few as their failures allow."""
        if len(requests) == 1:
            self._answer(requests[0], self._call(requests[0].predictor, requests[0].batch, 1))
            return
        merged = _concatenate([r.batch for r in requests])
        outcome = self._call(requests[0].predictor, merged, len(requests))
        if isinstance(outcome, PredictionResult):
            start = 0
            for request in requests:
                end = start + request.batch.n_rows
                self._answer(request, _slice(outcome, start, end))
                start = end
            return
        with self._cond:
            self._fallbacks += 1
        culprits = _culprits(outcome, requests)
        if culprits is None:
            for request in requests:
                self._run([request])
            return
        for request in requests:
            if request in culprits:
                self._run([request])
        rest = [r for r in requests if r not in culprits]
        if rest:
            self._run(rest)

    def _call(self, predictor: BatchPredictor, batch: ValidatedBatch, count: int) -> Outcome:
        with self._cond:
            self._calls += 1
            if count > 1:
                self._merged_calls += 1
                self._merged_requests += count
            self._largest = max(self._largest, count)
            self._largest_rows = max(self._largest_rows, batch.n_rows)
        try:
            return predictor.predict(batch)
        except Exception as exc:
            return exc

    @staticmethod
    def _answer(request: _Request, outcome: Outcome) -> None:
        try:
            value = request.complete(outcome)
        except BaseException as exc:
            request.future.set_exception(exc)
        else:
            request.future.set_result(value)


def _concatenate(batches: list[ValidatedBatch]) -> ValidatedBatch:
    columns = {
        name: np.concatenate([b.columns[name] for b in batches]) for name in batches[0].columns
    }
    return ValidatedBatch(columns=columns, n_rows=sum(b.n_rows for b in batches))


def _slice(result: PredictionResult, start: int, end: int) -> PredictionResult:
    probabilities = result.probabilities
    return PredictionResult(
        predictions=result.predictions[start:end],
        probabilities=None if probabilities is None else probabilities[start:end],
        matrix=None if result.matrix is None else result.matrix[start:end],
    )


def _culprits(error: BaseException, requests: list[_Request]) -> set[_Request] | None:
    """The requests owning the rows a row-level failure names, or None when it names none."""
    if not isinstance(error, ValidationFailed) or not isinstance(error.details, list):
        return None
    rows: set[int] = set()
    for problem in error.details:
        row = problem.get("row") if isinstance(problem, dict) else None
        if not isinstance(row, int) or problem.get("type") != "non_finite_output":
            return None
        rows.add(row)
    culprits: set[_Request] = set()
    start = 0
    for request in requests:
        end = start + request.batch.n_rows
        if any(start <= row < end for row in rows):
            culprits.add(request)
        start = end
    return culprits or None


class Batchers:
    """The process's batchers, one per (version id, runtime), made on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batchers: dict[tuple[int, str], Batcher] = {}
        self._closed = False

    def get(self, key: tuple[int, str]) -> Batcher:
        """The batcher of one version and runtime."""
        with self._lock:
            batcher = self._batchers.get(key)
            if batcher is None:
                batcher = self._batchers[key] = Batcher(f"{key[0]}-{key[1]}")
                if self._closed:
                    batcher.close()
            return batcher

    def stats(self) -> dict[tuple[int, str], BatcherStats]:
        """Every batcher's counters, by (version id, runtime)."""
        with self._lock:
            batchers = dict(self._batchers)
        return {key: batcher.stats() for key, batcher in batchers.items()}

    def close(self) -> None:
        """Answer what is queued and stop every collector."""
        with self._lock:
            self._closed = True
            batchers = list(self._batchers.values())
        for batcher in batchers:
            batcher.close()
