"""Fixed-window rate limits whose counters live in the database, so every worker process and
every replica sharing the database enforces the same limit (no extra service to run)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from modelserve.auth.models import RateCounter
from modelserve.core.db import Database
from modelserve.core.errors import TooManyRequests

_PRUNE_EVERY = 500
_LONGEST_WINDOW = 3600


class RateLimiter:
    """Counts hits per key per window; ``hit`` raises TooManyRequests past the limit."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self._hits = 0

    def hit(self, key: str, *, limit: int, window_seconds: int, message: str) -> None:
        """Count one hit for ``key``; refuse it when the window already holds ``limit``."""
        now = self.clock()
        window_start = int(now // window_seconds) * window_seconds
        count = self._increment(key, window_start, int(now))
        if count > limit:
            retry_after = max(1, math.ceil(window_start + window_seconds - now))
            raise TooManyRequests(message, retry_after=retry_after)

    def add(self, key: str, window_seconds: int) -> tuple[int, float]:
        """Count one hit for ``key``: (hits in the current window, when the window ends)."""
        now = self.clock()
        window_start = int(now // window_seconds) * window_seconds
        return self._increment(key, window_start, int(now)), float(window_start + window_seconds)

    def reset(self, key: str) -> None:
        """Forget a key's hits (e.g. after a successful login)."""
        with self.db.transaction() as session:
            session.execute(delete(RateCounter).where(RateCounter.key == key))

    def _increment(self, key: str, window: int, now: int) -> int:
        dialect = self.db.engine.dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = (
            insert(RateCounter)
            .values(key=key, window=window, count=1)
            .on_conflict_do_update(
                index_elements=[RateCounter.key, RateCounter.window],
                set_={"count": RateCounter.count + 1},
            )
            .returning(RateCounter.count)
        )
        with self.db.transaction() as session:
            count = int(session.execute(statement).scalar_one())
            self._hits += 1
            if self._hits % _PRUNE_EVERY == 0:
                stale = now - _LONGEST_WINDOW
                session.execute(delete(RateCounter).where(RateCounter.window < stale))
        return count

    def count(self, key: str, window_seconds: int) -> int:
        """Hits of ``key`` in the current window (for tests and diagnostics)."""
        window = int(self.clock() // window_seconds) * window_seconds
        with self.db.sessions() as session:
            value = session.scalar(
                select(RateCounter.count).where(
                    RateCounter.key == key, RateCounter.window == window
                )
            )
        return int(value or 0)
