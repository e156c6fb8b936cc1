"""What a process last verified about users, sessions and keys: fresh for ``ttl`` seconds, and
while the database is unreachable, usable for ``grace`` seconds after it was verified.

A value read from the cache once it is half its ``ttl`` old is read again in the background
(``Refresher``), while requests go on using it: under steady traffic an entry then never goes
stale, and no request waits for the database. Without that, every ``ttl`` each caller's entry
expired under all their concurrent requests at once, and each of them went to a worker thread
and read the database (16 reads every 2 s at 16 connections). Revocation still reaches the
process within ``ttl`` of the read that saw it, which is the bound a refresh is stored with.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from modelserve.core.errors import DATABASE_UNREACHABLE, DatabaseUnavailable

T = TypeVar("T")
K = TypeVar("K")

RETRY_SECONDS = 1.0
"""After the database failed, how long every lookup answers from the grace cache before one
lookup tries the database again (so an outage does not cost a connection attempt per request)."""

_MAX_ITEMS = 10_000
REFRESH_AFTER = 0.5
"""An entry read from the cache this far into its ``ttl`` is read again in the background."""

logger = logging.getLogger(__name__)


class Outage:
    """Whether the database was found unreachable within the last ``RETRY_SECONDS``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._until = 0.0

    def active(self) -> bool:
        """True while lookups should not try the database."""
        return self.clock() < self._until

    def begin(self) -> None:
        """The database just failed."""
        self._until = self.clock() + RETRY_SECONDS

    def end(self) -> None:
        """The database just answered."""
        self._until = 0.0


class GraceCache(Generic[K, T]):
    """Values by key with the time they were verified against the database."""

    def __init__(self, ttl: float, grace: float, outage: Outage) -> None:
        self.ttl = ttl
        self.grace = grace
        self.outage = outage
        self._items: dict[K, tuple[float, T]] = {}
        self._lock = threading.Lock()

    def _hit(self, key: K) -> tuple[float, T] | None:
        with self._lock:
            return self._items.get(key)

    def _in_grace(self, verified_at: float, now: float) -> bool:
        return self.grace > 0 and now - verified_at < self.grace

    def peek(self, key: K) -> tuple[bool, T | None]:
        """(usable without the database?, value): fresh, or within grace during an outage."""
        usable, value, _ = self.peek_due(key)
        return usable, value

    def peek_due(self, key: K) -> tuple[bool, T | None, bool]:
        """``peek``, and whether the value is due a refresh (fresh, past ``REFRESH_AFTER`` of
        its ``ttl``, and the database not known to be down)."""
        hit = self._hit(key)
        if hit is None:
            return False, None, False
        now = self.outage.clock()
        age = now - hit[0]
        if age < self.ttl:
            return True, hit[1], age >= self.ttl * REFRESH_AFTER and not self.outage.active()
        if self.outage.active() and self._in_grace(hit[0], now):
            return True, hit[1], False
        return False, None, False

    def refresh(self, key: K, load: Callable[[], T]) -> None:
        """Read a cached value again and keep it as verified when the read began; when the
        database cannot be reached, leave the cached value as it is (it expires as before)."""
        started = self.outage.clock()
        try:
            value = load()
        except DATABASE_UNREACHABLE:
            self.outage.begin()
            return
        self.outage.end()
        with self._lock:
            if key in self._items:  # not one evicted meanwhile (the cache stays bounded)
                self._items[key] = (started, value)

    def get(self, key: K, load: Callable[[], T]) -> T:
        """The fresh value, loading it when stale; during an outage the value verified within
        the grace window, else DatabaseUnavailable."""
        now = self.outage.clock()
        hit = self._hit(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        if hit is not None and self.outage.active() and self._in_grace(hit[0], now):
            return hit[1]
        try:
            value = load()
        except DATABASE_UNREACHABLE as exc:
            self.outage.begin()
            if hit is not None and self._in_grace(hit[0], now):
                return hit[1]
            raise DatabaseUnavailable(
                "The database is unavailable and this credential was not verified recently; "
                "try again shortly.",
                retry_after=int(RETRY_SECONDS) + 1,
            ) from exc
        self.outage.end()
        with self._lock:
            if len(self._items) >= _MAX_ITEMS:
                self._evict(now)
            self._items[key] = (now, value)
        return value

    def _evict(self, now: float) -> None:
        # Keep what is still within grace (outage insurance); drop the rest, or all if needed.
        keep = max(self.ttl, self.grace)
        self._items = {k: v for k, v in self._items.items() if now - v[0] < keep}
        if len(self._items) >= _MAX_ITEMS:
            self._items.clear()


class Refresher:
    """Runs ``GraceCache.refresh`` calls on one background thread, each (cache, key) queued once
    at a time; started on the first call."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[GraceCache[Any, Any], Any, Callable[[], Any]] | None]
        self._queue = queue.SimpleQueue()
        self._pending: set[tuple[int, Hashable]] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closed = False
        self.refreshed = 0
        """Refreshes done (for tests and diagnostics)."""

    def submit(self, cache: GraceCache[K, T], key: K, load: Callable[[], T]) -> None:
        """Queue a refresh of ``key`` in ``cache`` unless one is queued or running; return at
        once."""
        marker = (id(cache), key)
        with self._lock:
            if self._closed or marker in self._pending:
                return
            self._pending.add(marker)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="modelserve-auth-refresh", daemon=True
                )
                self._thread.start()
        self._queue.put((cache, key, load))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no refresh is queued or running; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def close(self) -> None:
        """Stop the thread after the refreshes queued so far."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=10)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            cache, key, load = item
            try:
                cache.refresh(key, load)
            except Exception:
                logger.exception("auth cache: refreshing an entry failed; it expires as before")
            with self._idle:
                self._pending.discard((id(cache), key))
                self.refreshed += 1
                self._idle.notify_all()
