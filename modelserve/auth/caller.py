"""Who is calling: the authenticated user (and key), checked against the database with a short
per-process cache, so disabling a user, revoking a key or changing a role takes effect on every
process within ``auth_cache_seconds``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelserve.auth.cache import GraceCache, Outage, Refresher
from modelserve.auth.models import ApiKey, LoginSession
from modelserve.auth.ratelimit import RateLimiter
from modelserve.auth.throttle import KeyFailures
from modelserve.auth.tokens import TokenSigner, api_key_prefix, sha256_token
from modelserve.config import Settings
from modelserve.core.clock import utcnow
from modelserve.core.db import Database
from modelserve.core.errors import Forbidden, Unauthorized
from modelserve.users.models import Role, User

T = TypeVar("T")
K = TypeVar("K")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: a user, possibly through one of their API keys."""

    user_id: int
    username: str
    role: Role
    api_key_id: int | None = None
    key_prefix: str | None = None
    key_models: frozenset[str] | None = None
    key_quota: int | None = None
    key_expires_at: datetime | None = None

    @property
    def label(self) -> str:
        """How logs name this caller."""
        return f"{self.username} ({self.key_prefix})" if self.key_prefix else self.username

    @property
    def is_admin(self) -> bool:
        """Whether the caller is an admin."""
        return self.role is Role.ADMIN

    def require(self, role: Role) -> None:
        """Forbidden unless the caller's role includes ``role``."""
        if not self.role.includes(role):
            raise Forbidden(f"This needs the {role.value} role.")

    def may_use_model(self, name: str) -> bool:
        """Whether a key restricted to some models admits ``name``."""
        return self.key_models is None or name in self.key_models

    def require_model(self, name: str) -> None:
        """Forbidden when the caller's key is restricted to other models."""
        if not self.may_use_model(name):
            raise Forbidden(f"This API key may not use model {name!r}.")


class _CacheMiss(Exception):
    """Something needed is not usable from the cache."""


class _UnknownKey(Unauthorized):
    """No such API key: what a guesser gets (same answer as a revoked key's)."""


@dataclass(frozen=True)
class _UserState:
    username: str
    role: Role
    enabled: bool


@dataclass(frozen=True)
class _KeyState:
    id: int
    user_id: int
    prefix: str
    models: frozenset[str] | None
    quota: int | None
    expires_at: datetime | None
    revoked: bool


class Authenticator:
    """Turns a bearer credential (access JWT or API key) into a Caller."""

    def __init__(
        self,
        db: Database,
        signer: TokenSigner,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        grace: float = 0.0,
        key_failures: KeyFailures | None = None,
    ) -> None:
        self.db = db
        self.signer = signer
        self.outage = Outage(clock)
        self.key_failures = key_failures
        self._users: GraceCache[int, _UserState | None] = GraceCache(ttl, grace, self.outage)
        self._sessions: GraceCache[uuid.UUID, bool] = GraceCache(ttl, grace, self.outage)
        self._keys: GraceCache[str, _KeyState | None] = GraceCache(ttl, grace, self.outage)
        self.refresher = Refresher()
        """Reads cached entries again before they expire (see ``auth.cache``)."""

    @classmethod
    def of(
        cls, settings: Settings, db: Database, signer: TokenSigner, limiter: RateLimiter
    ) -> Authenticator:
        """The authenticator ``settings`` describe."""
        failures = KeyFailures(
            db,
            limiter,
            limit=settings.key_failures_per_address,
            window_seconds=settings.key_failure_window_seconds,
        )
        return cls(
            db,
            signer,
            settings.auth_cache_seconds,
            grace=settings.auth_grace_seconds,
            key_failures=failures,
        )

    def close(self) -> None:
        """Stop refreshing; write the failed-key tallies to the audit log."""
        self.refresher.close()
        if self.key_failures is not None:
            self.key_failures.close()

    def from_cache(self, credential: str, address: str | None = None) -> Caller | None:
        """The caller when everything needed is usable from the cache (no database, safe on the
        event loop); None when ``authenticate`` must run in a thread. An unknown API key goes to
        ``authenticate`` too, which counts it against the address."""
        is_key = api_key_prefix(credential) is not None
        if is_key and self.key_failures is not None:
            self.key_failures.check(address)
        try:
            return self._authenticate(credential, cached_only=True)
        except (_CacheMiss, _UnknownKey):
            return None

    def authenticate(self, credential: str, address: str | None = None) -> Caller:
        """The caller a credential belongs to; Unauthorized when it is not valid now,
        TooManyRequests for an address refused too many keys, DatabaseUnavailable when the
        database is needed and cannot be reached."""
        prefix = api_key_prefix(credential)
        if prefix is None or self.key_failures is None:
            return self._authenticate(credential, cached_only=False)
        self.key_failures.check(address)
        try:
            return self._authenticate(credential, cached_only=False)
        except _UnknownKey:
            self.key_failures.failed(address, prefix)
            raise

    def _authenticate(self, credential: str, *, cached_only: bool) -> Caller:
        if api_key_prefix(credential) is not None:
            return self._from_key(credential, cached_only)
        claims = self.signer.verify(credential)
        live = self._lookup(self._sessions, claims.session_id, self._session_live, cached_only)
        if not live:
            raise Unauthorized("Session ended; log in again.")
        user = self._user(claims.user_id, cached_only)
        return Caller(user_id=claims.user_id, username=user.username, role=user.role)

    def _lookup(
        self, cache: GraceCache[K, T], key: K, load: Callable[[K], T], cached_only: bool
    ) -> T:
        if not cached_only:
            return cache.get(key, lambda: load(key))
        fresh, value, due = cache.peek_due(key)
        if not fresh:
            raise _CacheMiss
        if due:
            self.refresher.submit(cache, key, lambda: load(key))
        return value  # type: ignore[return-value]

    def _from_key(self, key: str, cached_only: bool) -> Caller:
        digest = sha256_token(key)
        state = self._lookup(self._keys, digest, self._load_key, cached_only)
        if state is None:
            raise _UnknownKey("Invalid or revoked API key.")
        if state.revoked:
            raise Unauthorized("Invalid or revoked API key.")
        if state.expires_at is not None and state.expires_at <= utcnow():
            raise Unauthorized("API key expired.")
        user = self._user(state.user_id, cached_only)
        return Caller(
            user_id=state.user_id,
            username=user.username,
            role=user.role,
            api_key_id=state.id,
            key_prefix=state.prefix,
            key_models=state.models,
            key_quota=state.quota,
            key_expires_at=state.expires_at,
        )

    def _user(self, user_id: int, cached_only: bool) -> _UserState:
        user = self._lookup(self._users, user_id, self._load_user, cached_only)
        if user is None or not user.enabled:
            raise Unauthorized("Account disabled or deleted.")
        return user

    def _read(self) -> Session:
        return self.db.sessions()

    def _load_user(self, user_id: int) -> _UserState | None:
        with self._read() as session:
            row = session.get(User, user_id)
            if row is None:
                return None
            return _UserState(username=row.username, role=Role(row.role), enabled=row.enabled)

    def _session_live(self, session_id: uuid.UUID) -> bool:
        with self._read() as session:
            row = session.get(LoginSession, session_id)
            return row is not None and row.revoked_at is None

    def _load_key(self, digest: str) -> _KeyState | None:
        with self._read() as session:
            row = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).one_or_none()
            if row is None:
                return None
            return _KeyState(
                id=row.id,
                user_id=row.user_id,
                prefix=row.prefix,
                models=frozenset(row.models) if row.models is not None else None,
                quota=row.quota_per_minute,
                expires_at=row.expires_at,
                revoked=row.revoked_at is not None,
            )
