"""When the prediction-log writer replays spill files: its own, with back-off while the
database is down, and those of dead processes (and their journals), at start and every 30 s."""

from __future__ import annotations

import logging
import time

from sqlalchemy.exc import SQLAlchemyError

from modelserve.predictions.spill import SpillStore
from modelserve.predictions.store import RecordStore

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 10.0
ORPHAN_SCAN_SECONDS = 30.0
"""How often a process looks for spill files left by dead processes (and once at start)."""


class Replayer:
    """The writer thread's replay schedule and counters; used by that thread only."""

    def __init__(self, spill: SpillStore, store: RecordStore, *, batch_size: int, seconds: float):
        self.spill = spill
        self.store = store
        self.batch_size = batch_size
        self.seconds = seconds
        self.backoff = seconds
        self.next_replay = 0.0
        self.next_scan = 0.0
        self.db_down = False
        self.replayed = self.adopted = 0

    def idle_seconds(self) -> float:
        """How long the thread may wait for records before a replay or scan is due."""
        now = time.monotonic()
        due = self.next_scan
        if self.spill.pending:
            due = min(due, self.next_replay)
        return min(max(due - now, 0.0), 1.0)

    def own_due(self, now: float) -> bool:
        """Whether spilled records wait and their replay is due."""
        return bool(self.spill.pending) and now >= self.next_replay

    def scan_due(self, now: float) -> bool:
        """Whether to look for dead processes' files now (then not for 30 s)."""
        if now < self.next_scan:
            return False
        self.next_scan = now + ORPHAN_SCAN_SECONDS
        return True

    def database_back(self) -> None:
        """A write succeeded: replay what was spilled meanwhile now."""
        if self.db_down:
            self.db_down = False
            self.next_replay = 0.0

    def database_down(self, exc: SQLAlchemyError, *, retried: bool) -> None:
        """A write failed because the database is unavailable."""
        # Only failed replays back off further: a failed batch says nothing new.
        now = time.monotonic()
        if not self.db_down:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logger.warning("prediction log: database unavailable (%s); spilling records", message)
            self.next_replay = now + self.backoff
        self.db_down = True
        if retried:
            self.next_replay = now + self.backoff
            self.backoff = min(self.backoff * 2, MAX_BACKOFF_SECONDS)

    def replay(self, *, adopt: bool) -> None:
        """Replay this process's spill files, or (``adopt``) dead processes' files."""
        try:
            if adopt:
                self.adopted += self.spill.adopt_orphans(self.store.store, self.batch_size)
            else:
                self.replayed += self.spill.replay_own(self.store.store, self.batch_size)
        except SQLAlchemyError as exc:
            self.database_down(exc, retried=True)
            if adopt:
                self.next_scan = time.monotonic() + self.backoff
        except OSError:
            logger.exception("prediction log: cannot read spill files")
        else:
            if not adopt:
                self.db_down = False
                self.backoff = self.seconds
                self.next_replay = time.monotonic() + self.seconds
