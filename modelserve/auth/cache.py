"""What a process last verified about users, sessions and keys: fresh for ``ttl`` seconds, and
while the database is unreachable, usable for ``grace`` seconds after it was verified."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from modelserve.core.errors import DATABASE_UNREACHABLE, DatabaseUnavailable

T = TypeVar("T")
K = TypeVar("K")

RETRY_SECONDS = 1.0
"""After the database failed, how long every lookup answers from the grace cache before one
lookup tries the database again (so an outage does not cost a connection attempt per request)."""

_MAX_ITEMS = 10_000


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
        hit = self._hit(key)
        if hit is None:
            return False, None
        now = self.outage.clock()
        if now - hit[0] < self.ttl or (self.outage.active() and self._in_grace(hit[0], now)):
            return True, hit[1]
        return False, None

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
