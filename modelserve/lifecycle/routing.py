"""Which version serves a request: the target's version, plus the alias's traffic policy
(a sticky canary share and a shadow), cached per process until the registry changes."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelserve.core.db import Database
from modelserve.lifecycle.models import TrafficPolicy
from modelserve.registry.service import DEFAULT_ALIAS, RegistryService, ResolvedVersion

Variant = Literal["primary", "canary", "shadow"]
_BUCKETS = 10_000


@dataclass(frozen=True)
class Target:
    """Which version a request asks for: a number, an alias, or neither (the default)."""

    name: str
    version: int | None = None
    alias: str | None = None


@dataclass(frozen=True)
class Route:
    """Where a target's traffic goes right now."""

    primary: ResolvedVersion
    alias: str | None = None
    canary: ResolvedVersion | None = None
    canary_percent: float = 0.0
    shadow: ResolvedVersion | None = None

    def pick(self, caller_key: str) -> tuple[ResolvedVersion, Variant]:
        """The version serving this caller: the canary for a stable share of callers (the same
        caller always lands on the same side), else the primary."""
        if self.canary is None or self.canary_percent <= 0:
            return self.primary, "primary"
        digest = hashlib.sha256(f"{self.primary.model_name}/{self.alias}/{caller_key}".encode())
        bucket = int.from_bytes(digest.digest()[:8], "big") % _BUCKETS
        if bucket < self.canary_percent * _BUCKETS / 100:
            return self.canary, "canary"
        return self.primary, "primary"


def load_route(session: Session, target: Target) -> Route:
    """Read a target's route from the database."""
    registry = RegistryService(session)
    primary = registry.resolve(target.name, version=target.version, alias=target.alias)
    if target.version is not None:
        return Route(primary=primary)  # an explicit version is never redirected
    alias = target.alias or DEFAULT_ALIAS
    policy = session.scalars(
        select(TrafficPolicy).where(
            TrafficPolicy.model_id == primary.model_id, TrafficPolicy.alias == alias
        )
    ).one_or_none()
    if policy is None:
        return Route(primary=primary, alias=alias)
    canary = registry.resolve_id(policy.canary_version_id) if policy.canary_version_id else None
    shadow = registry.resolve_id(policy.shadow_version_id) if policy.shadow_version_id else None
    return Route(
        primary=primary,
        alias=alias,
        canary=canary,
        canary_percent=policy.canary_percent,
        shadow=shadow,
    )


class RouteTable:
    """Per-process cache of routes, dropped whenever the registry announces a change."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._routes: dict[Target, Route] = {}
        self._epoch = 0
        self._lock = threading.Lock()

    def route(self, target: Target) -> Route:
        """The cached route, read from the database on a miss."""
        with self._lock:
            found = self._routes.get(target)
            epoch = self._epoch
        if found is not None:
            return found
        with self.db.sessions() as session:
            route = load_route(session, target)
        with self._lock:
            # A change announced while we read makes what we read possibly stale: don't keep it.
            if epoch == self._epoch:
                self._routes[target] = route
        return route

    def invalidate(self) -> None:
        """Forget every route (the registry changed)."""
        with self._lock:
            self._epoch += 1
            self._routes.clear()
