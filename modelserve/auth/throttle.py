"""Attempts with unknown API keys (what guessing looks like) per client address: throttled
with counters shared through the database, and audited in aggregate (one event per address per
window per process, with a count), so a guessing run is slowed to a trickle and is visible
without an audit row per guess."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from modelserve.audit.service import Actor, record
from modelserve.auth.ratelimit import RateLimiter
from modelserve.core.db import Database
from modelserve.core.errors import DATABASE_UNREACHABLE, TooManyRequests

logger = logging.getLogger(__name__)

ACTION = "api_key.rejected"
_MAX_ADDRESSES = 10_000
_MAX_PREFIXES = 10
_OVERFLOW = "*"
"""Where attempts are tallied when too many addresses are already being tallied."""


@dataclass
class _Tally:
    count: int = 0
    throttled: int = 0
    prefixes: set[str] = field(default_factory=set)


class KeyFailures:
    """Counts failed API-key attempts per address; ``check`` refuses an address over the limit."""

    def __init__(
        self,
        db: Database,
        limiter: RateLimiter,
        *,
        limit: int,
        window_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.limiter = limiter
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self._blocked: dict[str, float] = {}
        self._tallies: dict[tuple[str, int], _Tally] = {}
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def check(self, address: str | None) -> None:
        """TooManyRequests while ``address`` is over the limit (the attempt is tallied)."""
        origin = address or "unknown"
        now = self.clock()
        until = self._blocked.get(origin)
        if until is None or until <= now:
            return
        self._tally(origin, now, None, throttled=True)
        raise TooManyRequests(
            "Too many failed API-key attempts from this address; try again later.",
            retry_after=max(1, math.ceil(until - now)),
        )

    def failed(self, address: str | None, prefix: str | None) -> None:
        """Count a refused key; the address is refused from the ``limit``-th failure on."""
        origin = address or "unknown"
        now = self.clock()
        self._tally(origin, now, prefix, throttled=False)
        try:
            count, window_end = self.limiter.add(f"keyfail:addr:{origin}", self.window)
        except DATABASE_UNREACHABLE:
            return  # the request answers 401 anyway; nothing to count against
        if count >= self.limit:
            with self._lock:
                if len(self._blocked) >= _MAX_ADDRESSES:
                    self._blocked = {a: t for a, t in self._blocked.items() if t > now}
                self._blocked[origin] = window_end

    def _tally(self, origin: str, now: float, prefix: str | None, *, throttled: bool) -> None:
        window = int(now // self.window) * self.window
        with self._lock:
            if (origin, window) not in self._tallies and len(self._tallies) >= _MAX_ADDRESSES:
                origin = _OVERFLOW
            tally = self._tallies.setdefault((origin, window), _Tally())
            tally.count += 1
            tally.throttled += throttled
            if prefix is not None and len(tally.prefixes) < _MAX_PREFIXES:
                tally.prefixes.add(prefix)
            self._schedule(window + self.window - now + 0.5)

    def _schedule(self, delay: float) -> None:
        # Called with the lock held: one timer at a time writes what has ended.
        if self._timer is None:
            self._timer = threading.Timer(delay, self._on_timer)
            self._timer.daemon = True
            self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
        self.flush(ended_only=True)

    def flush(self, *, ended_only: bool = False) -> None:
        """Write one audit event per tallied (address, window): of ended windows only, or all
        (at shutdown). What cannot be written now stays tallied."""
        now = self.clock()
        with self._lock:
            due = {
                key: tally
                for key, tally in self._tallies.items()
                if not ended_only or key[1] + self.window <= now
            }
            for key in due:
                del self._tallies[key]
        if not due:
            return
        try:
            with self.db.transaction() as session:
                for (origin, window), tally in due.items():
                    record(
                        session,
                        ACTION,
                        Actor(None, "anonymous", None if origin == "unknown" else origin),
                        count=tally.count,
                        throttled=tally.throttled,
                        prefixes=sorted(tally.prefixes),
                        window_start=datetime.fromtimestamp(window, UTC).isoformat(),
                        window_seconds=self.window,
                    )
        except DATABASE_UNREACHABLE:
            logger.warning("could not audit %d failed API-key tallies; retrying later", len(due))
            with self._lock:
                for key, tally in due.items():
                    self._tallies.setdefault(key, tally)
                self._schedule(self.window)

    def close(self) -> None:
        """Stop the timer and write what is tallied."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush()
