"""Login, refresh-token rotation, logout and sign-up; knows nothing of HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from modelserve.audit.service import Actor, record, record_now
from modelserve.auth.models import LoginSession, RefreshToken
from modelserve.auth.passwords import verify_password
from modelserve.auth.ratelimit import RateLimiter
from modelserve.auth.schemas import Accepted, TokenPair
from modelserve.auth.tokens import TokenSigner, new_refresh_token, sha256_token
from modelserve.config import Settings
from modelserve.core.clock import utcnow
from modelserve.core.db import Database
from modelserve.core.errors import Forbidden, Unauthorized
from modelserve.users.models import User
from modelserve.users.repository import UserRepository
from modelserve.users.schemas import UserCreate, UserRegister
from modelserve.users.service import new_user

BAD_LOGIN = "Incorrect username or password."


@dataclass(frozen=True)
class AuthContext:
    """Per-process pieces the auth service needs."""

    db: Database
    signer: TokenSigner
    limiter: RateLimiter
    settings: Settings


class AuthService:
    """Issues and revokes tokens within one request session (the caller commits)."""

    def __init__(self, session: Session, context: AuthContext) -> None:
        self.session = session
        self.ctx = context
        self.users = UserRepository(session)

    def login(self, username: str, password: str, address: str | None) -> TokenPair:
        """Tokens for valid credentials. Unknown user, wrong password and disabled account get the
        same answer in about the same time; attempts are limited per address and per (address,
        username)."""
        settings = self.ctx.settings
        # Per address, and per username from that address: an attacker's address slows down
        # without locking the owner out from theirs (a limit per username alone would let
        # anyone lock any account out).
        origin = address or "unknown"
        pair_key = f"login:user:{origin}:{username.lower()[:100]}"
        message = "Too many login attempts from this address; try again later."
        self.ctx.limiter.hit(
            f"login:addr:{origin}",
            limit=settings.login_limit_per_address,
            window_seconds=settings.login_window_seconds,
            message=message,
        )
        self.ctx.limiter.hit(
            pair_key,
            limit=settings.login_limit_per_user,
            window_seconds=settings.login_window_seconds,
            message=message,
        )
        user = self.users.by_username(username)
        valid = verify_password(password, user.password_hash if user else None)
        if user is None or not valid or not user.enabled:
            record_now(
                self.ctx.db,
                "login.failed",
                Actor(None, username[:100], address),
                reason="bad credentials" if not valid else "disabled",
            )
            raise Unauthorized(BAD_LOGIN)
        self.ctx.limiter.reset(pair_key)
        login = LoginSession(user_id=user.id)
        self.session.add(login)
        self.session.flush()
        record(
            self.session,
            "login.succeeded",
            Actor(user.id, user.username, address),
            f"user:{user.id}",
        )
        return self._issue(user, login)

    def refresh(self, token: str, address: str | None) -> TokenPair:
        """Rotate a refresh token. Presenting one already rotated revokes its whole family."""
        row = self.session.scalars(
            select(RefreshToken)
            .where(RefreshToken.token_hash == sha256_token(token))
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise Unauthorized("Invalid refresh token.")
        login = self.session.get(LoginSession, row.session_id)
        if login is None or login.revoked_at is not None:
            raise Unauthorized("Session ended; log in again.")
        if row.used_at is not None:
            self._revoke_out_of_band(login, "reuse", address)
            raise Unauthorized("Refresh token reused; the session is revoked.")
        if row.expires_at <= utcnow():
            raise Unauthorized("Refresh token expired.")
        user = self.users.get(login.user_id)
        if user is None or not user.enabled:
            raise Unauthorized("Account disabled or deleted.")
        claimed = self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
            .values(used_at=utcnow())
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            self._revoke_out_of_band(login, "reuse", address)
            raise Unauthorized("Refresh token reused; the session is revoked.")
        return self._issue(user, login)

    def logout(self, token: str, address: str | None) -> None:
        """End the session a refresh token belongs to (its access tokens stop working too)."""
        row = self.session.scalars(
            select(RefreshToken).where(RefreshToken.token_hash == sha256_token(token))
        ).one_or_none()
        login = self.session.get(LoginSession, row.session_id) if row else None
        if login is None:
            raise Unauthorized("Invalid refresh token.")
        if login.revoked_at is None:
            login.revoked_at, login.revoked_reason = utcnow(), "logout"
            record(
                self.session,
                "logout",
                Actor(login.user_id, str(login.user_id), address),
                f"user:{login.user_id}",
            )

    def register(self, data: UserRegister, address: str | None) -> Accepted:
        """Self-service sign-up; the answer never says whether the name or email was taken."""
        if not self.ctx.settings.open_registration:
            raise Forbidden("Registration is closed; ask an admin for an account.")
        candidate = new_user(
            UserCreate(username=data.username, email=data.email, password=data.password)
        )
        if not self.users.taken(data.username, str(data.email)):
            self.users.add(candidate)
            record(
                self.session,
                "user.registered",
                Actor(candidate.id, candidate.username, address),
                f"user:{candidate.id}",
            )
        return Accepted(
            message="If the username and email were available, the account exists "
            "now; log in to check."
        )

    def _issue(self, user: User, login: LoginSession) -> TokenPair:
        now = utcnow()
        lifetime = timedelta(days=self.ctx.settings.refresh_token_days)
        token = new_refresh_token()
        self.session.add(
            RefreshToken(
                session_id=login.id, token_hash=sha256_token(token), expires_at=now + lifetime
            )
        )
        self.session.flush()
        access = self.ctx.signer.issue(user.id, user.role, login.id, now)
        return TokenPair(
            access_token=access,
            expires_in=int(self.ctx.signer.lifetime.total_seconds()),
            refresh_token=token,
            refresh_expires_in=int(lifetime.total_seconds()),
        )

    def _revoke_out_of_band(self, login: LoginSession, reason: str, address: str | None) -> None:
        # The request fails with 401 and its session rolls back, so revoke in a transaction of
        # its own.
        with self.ctx.db.transaction() as session:
            session.execute(
                update(LoginSession)
                .where(LoginSession.id == login.id)
                .values(revoked_at=utcnow(), revoked_reason=reason)
            )
            record(
                session,
                "session.revoked",
                Actor(login.user_id, str(login.user_id), address),
                f"user:{login.user_id}",
                reason=reason,
            )
