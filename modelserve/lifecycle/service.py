"""Moving aliases and traffic only after every live server process has warmed the version,
rolling back from the audit trail, and traffic policies; knows nothing of HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from modelserve.audit.models import AuditEvent
from modelserve.audit.service import CLI_ACTOR, Actor, record
from modelserve.config import Settings
from modelserve.core.clock import utcnow
from modelserve.core.db import Database
from modelserve.core.errors import AppError, Conflict, ModelUnavailable, NotFound
from modelserve.lifecycle.changes import announce
from modelserve.lifecycle.models import (
    ServerInstance,
    TrafficPolicy,
    VersionReadiness,
    WarmupRequest,
)
from modelserve.lifecycle.schemas import (
    CanarySpec,
    ShadowSpec,
    TrafficList,
    TrafficPublic,
    TrafficUpdate,
)
from modelserve.registry.repository import RegistryRepository
from modelserve.registry.schemas import AliasPublic
from modelserve.registry.service import RegistryService, ResolvedVersion

Warm = Callable[[ResolvedVersion], None]
"""Load a version and have it answer a probe prediction in this process; raises AppError."""

_POLL_SECONDS = 0.05


class WarmupFailed(Conflict):
    """A version could not be loaded or failed its probe somewhere; nothing was moved."""

    code = "warmup_failed"


class WarmupTimeout(ModelUnavailable):
    """Some live server process did not report a warm-up in time; nothing was moved."""

    code = "warmup_timeout"


@dataclass(frozen=True)
class LifecycleSettings:
    """How long a move waits for every process, and when a silent process counts as gone."""

    warmup_timeout_seconds: float = 30.0
    instance_ttl_seconds: float = 5.0

    @classmethod
    def of(cls, settings: Settings) -> LifecycleSettings:
        """The lifecycle's part of the settings."""
        return cls(
            warmup_timeout_seconds=settings.warmup_timeout_seconds,
            instance_ttl_seconds=settings.instance_ttl_seconds,
        )


class LifecycleService:
    """Alias moves, rollbacks and traffic policies, each committed only once every live server
    process has loaded the versions it will serve and had them answer a probe."""

    def __init__(self, db: Database, warm: Warm, settings: LifecycleSettings) -> None:
        self.db = db
        self.warm = warm
        self.settings = settings

    def move_alias(
        self, name: str, alias: str, number: int, actor: Actor = CLI_ACTOR
    ) -> AliasPublic:
        """Point ``alias`` at version ``number`` once it is warm everywhere."""
        with self.db.sessions() as session:
            version = RegistryService(session).resolve(name, version=number)
        self.prepare([version])
        with self.db.transaction() as session:
            return RegistryService(session).set_alias(name, alias, number, actor)

    def rollback(self, name: str, alias: str, actor: Actor = CLI_ACTOR) -> AliasPublic:
        """Move ``alias`` back to where it pointed before its last move (from the audit trail)."""
        with self.db.sessions() as session:
            previous = _previous_version(session, name, alias)
        return self.move_alias(name, alias, previous, actor)

    def prepare(self, versions: Sequence[ResolvedVersion]) -> None:
        """Warm ``versions`` here, then in every live server process; raise if any fails."""
        for version in versions:
            try:
                self.warm(version)
            except AppError as exc:
                raise _failed(version, "this process", exc.message) from exc
        ids = [v.version_id for v in versions]
        with self.db.transaction() as session:
            requested = utcnow()
            for version_id in ids:
                session.merge(WarmupRequest(version_id=version_id, requested_at=requested))
            announce(session)  # wakes every watcher now
        try:
            self._wait_for_instances(versions, requested)
        finally:
            with self.db.transaction() as session:
                session.execute(
                    delete(WarmupRequest).where(
                        WarmupRequest.version_id.in_(ids), WarmupRequest.requested_at == requested
                    )
                )

    def _wait_for_instances(self, versions: Sequence[ResolvedVersion], requested: object) -> None:
        by_id = {v.version_id: v for v in versions}
        deadline = time.monotonic() + self.settings.warmup_timeout_seconds
        while True:
            with self.db.sessions() as session:
                live = self._live_instances(session)
                reports = session.scalars(
                    select(VersionReadiness).where(
                        VersionReadiness.version_id.in_(by_id),
                        VersionReadiness.instance_id.in_(live),
                        VersionReadiness.checked_at >= requested,
                    )
                ).all()
            for report in reports:
                if not report.ok:
                    raise _failed(
                        by_id[report.version_id], f"server {report.instance_id}", report.error
                    )
            done = {(r.instance_id, r.version_id) for r in reports}
            waiting = sorted({i for i in live for v in by_id if (i, v) not in done})
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise WarmupTimeout(
                    "Some server processes did not report the version warm in time; "
                    "nothing was moved.",
                    details={"waiting_for": waiting},
                )
            time.sleep(_POLL_SECONDS)

    def _live_instances(self, session: Session) -> list[str]:
        since = utcnow() - timedelta(seconds=self.settings.instance_ttl_seconds)
        statement = select(ServerInstance.id).where(ServerInstance.heartbeat_at >= since)
        return list(session.scalars(statement).all())

    def set_traffic(
        self, name: str, update: TrafficUpdate, actor: Actor = CLI_ACTOR
    ) -> TrafficPublic:
        """Set (or clear, with neither canary nor shadow) an alias's traffic policy."""
        with self.db.sessions() as session:
            registry = RegistryService(session)
            model = registry.resolve(name, alias=update.alias)  # the alias must exist
            targets = [
                registry.resolve(name, version=spec.version)
                for spec in (update.canary, update.shadow)
                if spec is not None
            ]
        self.prepare(targets)
        with self.db.transaction() as session:
            self._store_policy(session, model.model_id, update, targets)
            announce(session)
            record(
                session,
                "model.traffic_set",
                actor,
                f"model:{name}",
                alias=update.alias,
                canary=update.canary.model_dump() if update.canary else None,
                shadow=update.shadow.model_dump() if update.shadow else None,
            )
        return self.get_traffic(name, update.alias)

    @staticmethod
    def _store_policy(
        session: Session, model_id: int, update: TrafficUpdate, targets: list[ResolvedVersion]
    ) -> None:
        ids = iter(t.version_id for t in targets)
        canary_id = next(ids) if update.canary else None
        shadow_id = next(ids) if update.shadow else None
        policy = session.scalars(
            select(TrafficPolicy)
            .where(TrafficPolicy.model_id == model_id, TrafficPolicy.alias == update.alias)
            .with_for_update()
        ).one_or_none()
        if canary_id is None and shadow_id is None:
            if policy is not None:
                session.delete(policy)
            return
        if policy is None:
            policy = TrafficPolicy(model_id=model_id, alias=update.alias)
            session.add(policy)
        policy.canary_version_id = canary_id
        policy.canary_percent = update.canary.percent if update.canary else 0.0
        policy.shadow_version_id = shadow_id
        policy.updated_at = utcnow()
        session.flush()

    def get_traffic(self, name: str, alias: str) -> TrafficPublic:
        """An alias's traffic policy (empty when none is set)."""
        for policy in self.list_traffic(name).data:
            if policy.alias == alias:
                return policy
        with self.db.sessions() as session:
            version = RegistryService(session).resolve(name, alias=alias)
        return TrafficPublic(
            model=name,
            alias=alias,
            version=version.number,
            canary=None,
            shadow=None,
            updated_at=None,
        )

    def list_traffic(self, name: str) -> TrafficList:
        """Every traffic policy of a model."""
        with self.db.sessions() as session:
            repo = RegistryRepository(session)
            model = repo.get_model(name)
            if model is None:
                raise NotFound(f"Model {name!r} not found.")
            numbers = {v.id: v.number for v in repo.versions(model.id)}
            aliases = dict(repo.aliases(model.id))
            policies = session.scalars(
                select(TrafficPolicy)
                .where(TrafficPolicy.model_id == model.id)
                .order_by(TrafficPolicy.alias)
            ).all()
            return TrafficList(
                data=[
                    TrafficPublic(
                        model=name,
                        alias=p.alias,
                        version=aliases.get(p.alias),
                        canary=CanarySpec(
                            version=numbers[p.canary_version_id], percent=p.canary_percent
                        )
                        if p.canary_version_id
                        else None,
                        shadow=ShadowSpec(version=numbers[p.shadow_version_id])
                        if p.shadow_version_id
                        else None,
                        updated_at=p.updated_at,
                    )
                    for p in policies
                ]
            )


def _failed(version: ResolvedVersion, where: str, error: str | None) -> WarmupFailed:
    return WarmupFailed(
        f"{version.model_name} v{version.number} failed to warm up in {where}; nothing was moved.",
        details={"version": version.number, "where": where, "error": error},
    )


def _previous_version(session: Session, name: str, alias: str) -> int:
    """Where ``alias`` pointed before its most recent move, per the audit trail."""
    if RegistryRepository(session).get_model(name) is None:
        raise NotFound(f"Model {name!r} not found.")
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "model.alias_moved", AuditEvent.target == f"model:{name}")
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .limit(1000)
    )
    for event in events:
        if event.details.get("alias") == alias:
            previous = event.details.get("previous_version")
            if previous is None:
                raise Conflict(
                    f"{name}@{alias} has never pointed elsewhere; there is nothing to roll back to."
                )
            return int(previous)
    raise NotFound(f"Model {name!r} has no alias {alias!r} to roll back.")
