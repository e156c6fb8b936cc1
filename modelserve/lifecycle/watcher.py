"""Keeps one server process in step with the registry shared by every process.

A background thread wakes on a PostgreSQL NOTIFY (or polls the generation counter on SQLite),
drops the cached routes, warms every version an alias move or traffic change is waiting on and
reports the outcome, and keeps the versions behind aliases loaded. It also heartbeats, so a move
knows which processes must report before it completes."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime

import psycopg
from sqlalchemy import delete, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from modelserve.core.clock import utcnow
from modelserve.core.db import Database
from modelserve.core.errors import AppError
from modelserve.inference.cache import CacheKey, cache_key
from modelserve.lifecycle.changes import CHANNEL, generation, on_local_commit
from modelserve.lifecycle.models import (
    ServerInstance,
    TrafficPolicy,
    VersionReadiness,
    WarmupRequest,
)
from modelserve.lifecycle.routing import RouteTable
from modelserve.lifecycle.service import Warm
from modelserve.registry.models import ModelAlias, ModelVersion
from modelserve.registry.service import DEFAULT_ALIAS, RegistryService, ResolvedVersion

logger = logging.getLogger(__name__)


class RegistryWatcher:
    """The per-process follower of registry changes; ``start`` warms what aliases serve."""

    def __init__(
        self,
        db: Database,
        routes: RouteTable,
        warm: Warm,
        *,
        is_loaded: Callable[[CacheKey], bool],
        poll_seconds: float,
        heartbeat_seconds: float,
        listen_url: str | None = None,
        warm_limit: int,
    ) -> None:
        self.db = db
        self.routes = routes
        self.warm = warm
        self.is_loaded = is_loaded
        self.poll_seconds = poll_seconds
        self.listen_url = listen_url or db.url
        """LISTEN needs a session: behind PgBouncer in transaction mode, a direct URL."""
        self.heartbeat_seconds = heartbeat_seconds
        self.warm_limit = warm_limit
        self.instance_id = str(uuid.uuid4())
        self.warm_errors: dict[int, str] = {}
        """version id -> why it failed to warm here (reported by readiness checks)."""
        self._seen = -1
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._remove_hook: Callable[[], None] | None = None
        self._postgres = db.engine.dialect.name == "postgresql"

    def start(self) -> None:
        """Register this process, warm what serves traffic, then follow changes in a thread."""
        self._remove_hook = on_local_commit(self.db, self._local_change)
        try:
            self._heartbeat()
            self.sync()
        except SQLAlchemyError as exc:
            # Unreachable or not yet migrated: serve anyway (readiness says why) and catch up.
            self._report(exc)
        self._thread = threading.Thread(
            target=self._run, name="modelserve-registry-watcher", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop following and deregister (so moves stop waiting for this process)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._remove_hook is not None:
            self._remove_hook()
        try:
            with self.db.transaction() as session:
                session.execute(delete(ServerInstance).where(ServerInstance.id == self.instance_id))
        except SQLAlchemyError:
            logger.warning("could not deregister server instance %s", self.instance_id)

    def _local_change(self) -> None:
        # This process committed a change: never answer from stale routes, even for a moment.
        self.routes.invalidate()
        self._wake.set()

    def _run(self) -> None:
        listener: psycopg.Connection[tuple[object, ...]] | None = None
        last_beat = time.monotonic()
        while not self._stop.is_set():
            try:
                if self._postgres:
                    listener = listener or self._listen()
                    self._wait_for_notify(listener)
                else:
                    self._wake.wait(self.poll_seconds)
                    self._wake.clear()
                if time.monotonic() - last_beat >= self.heartbeat_seconds:
                    self._heartbeat()
                    last_beat = time.monotonic()
                self.sync()
                self._last_error = None
            except (SQLAlchemyError, psycopg.Error) as exc:
                self._report(exc)
                if listener is not None:
                    listener.close()
                    listener = None
                self._stop.wait(self.poll_seconds)
        if listener is not None:
            listener.close()

    def _report(self, exc: Exception) -> None:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if message != self._last_error:  # once per distinct error, not once per poll
            logger.warning("registry watcher: %s; retrying", message)
        self._last_error = message

    def _listen(self) -> psycopg.Connection[tuple[object, ...]]:
        url = make_url(self.listen_url).set(drivername="postgresql")
        conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def _wait_for_notify(self, listener: psycopg.Connection[tuple[object, ...]]) -> None:
        # Wakes on the first notification, or after the poll interval to heartbeat and to catch
        # anything missed while reconnecting (the generation is checked either way).
        for _ in listener.notifies(timeout=self.poll_seconds, stop_after=1):
            pass

    def _heartbeat(self) -> None:
        with self.db.transaction() as session:
            session.merge(
                ServerInstance(
                    id=self.instance_id,
                    hostname=socket.gethostname()[:255],
                    pid=os.getpid(),
                    heartbeat_at=utcnow(),
                )
            )

    @property
    def generation_seen(self) -> int:
        """The registry generation this process has caught up with (-1 before the first)."""
        return self._seen

    def sync(self) -> None:
        """Catch up with the registry if it changed since the last look."""
        with self.db.sessions() as session:
            current = generation(session)
            if current == self._seen:
                return
            pending = list(session.execute(select(WarmupRequest)).scalars())
            answered = self._answered(session)
            serving = _serving_versions(session, self.warm_limit)
        self.routes.invalidate()
        for request in pending:
            if answered.get(request.version_id) != request.requested_at:
                self._answer(request)
        for version in serving:
            if not self.is_loaded(cache_key(version)):  # with the model's current runtime
                self._try_warm(version)
        self._seen = current

    def _answered(self, session: Session) -> dict[int, datetime]:
        rows = session.execute(
            select(VersionReadiness.version_id, VersionReadiness.checked_at).where(
                VersionReadiness.instance_id == self.instance_id
            )
        ).all()
        return dict(rows)

    def _answer(self, request: WarmupRequest) -> None:
        with self.db.sessions() as session:
            version = RegistryService(session).resolve_id(request.version_id)
        error = self._try_warm(version)
        with self.db.transaction() as session:
            session.merge(
                VersionReadiness(
                    instance_id=self.instance_id,
                    version_id=request.version_id,
                    ok=error is None,
                    error=error,
                    # The request answered, so its mover can tell this answer from older ones.
                    checked_at=request.requested_at,
                )
            )

    def _try_warm(self, version: ResolvedVersion) -> str | None:
        try:
            self.warm(version)
        except AppError as exc:
            message = f"{exc.code}: {exc.message}"
            self.warm_errors[version.version_id] = message
            logger.error("%s v%s failed to warm: %s", version.model_name, version.number, message)
            return message
        self.warm_errors.pop(version.version_id, None)
        return None


def _serving_versions(session: Session, limit: int) -> list[ResolvedVersion]:
    """Versions that take traffic without naming a number: alias targets, canaries, shadows,
    and the latest version of models without a production alias."""
    ids: list[int] = list(session.scalars(select(ModelAlias.version_id)).all())
    for canary, shadow in session.execute(
        select(TrafficPolicy.canary_version_id, TrafficPolicy.shadow_version_id)
    ):
        ids.extend(i for i in (canary, shadow) if i is not None)
    with_production = select(ModelAlias.model_id).where(ModelAlias.name == DEFAULT_ALIAS)
    latest = (
        select(func.max(ModelVersion.id))
        .where(ModelVersion.model_id.not_in(with_production))
        .group_by(ModelVersion.model_id)
    )
    ids.extend(session.scalars(latest).all())
    registry = RegistryService(session)
    return [registry.resolve_id(i) for i in dict.fromkeys(ids)][:limit]
