"""User administration, shared by the API and the CLI; knows nothing of HTTP."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from modelserve.audit.service import Actor, record
from modelserve.auth.models import LoginSession
from modelserve.auth.passwords import hash_password
from modelserve.core.clock import utcnow
from modelserve.core.errors import Conflict, NotFound
from modelserve.users.models import Role, User
from modelserve.users.repository import UserRepository
from modelserve.users.schemas import UserCreate, UserPublic, UsersPublic, UserUpdate


class UserService:
    """Create, read, change and delete users within one session (the caller commits)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.repo = UserRepository(session)

    def create(self, data: UserCreate, actor: Actor) -> UserPublic:
        """Add an account; Conflict when the name or email is taken."""
        if self.repo.taken(data.username, data.email):
            raise Conflict("That username or email is already taken.")
        user = self.repo.add(new_user(data))
        record(
            self.session,
            "user.created",
            actor,
            f"user:{user.id}",
            username=user.username,
            role=user.role,
        )
        return UserPublic.model_validate(user)

    def list(self) -> UsersPublic:
        """Every user."""
        users = [UserPublic.model_validate(u) for u in self.repo.all()]
        return UsersPublic(data=users, count=len(users))

    def get(self, user_id: int) -> UserPublic:
        """One user."""
        return UserPublic.model_validate(self._user(user_id))

    def find(self, username: str) -> UserPublic:
        """One user by name."""
        user = self.repo.by_username(username)
        if user is None:
            raise NotFound(f"User {username!r} not found.")
        return UserPublic.model_validate(user)

    def update(self, user_id: int, change: UserUpdate, actor: Actor) -> UserPublic:
        """Apply the given fields; the last enabled admin cannot be disabled or demoted."""
        user = self._user(user_id)
        if change.enabled is False or (change.role is not None and change.role is not Role.ADMIN):
            self._keep_an_admin(user)
        if change.enabled is not None and change.enabled != user.enabled:
            user.enabled = change.enabled
            action = "user.enabled" if change.enabled else "user.disabled"
            ended = 0 if change.enabled else self._end_sessions(user.id, "user_disabled")
            details = {} if change.enabled else {"sessions_revoked": ended}
            record(self.session, action, actor, f"user:{user.id}", **details)
        if change.role is not None and change.role.value != user.role:
            record(
                self.session,
                "user.role_changed",
                actor,
                f"user:{user.id}",
                before=user.role,
                after=change.role.value,
            )
            user.role = change.role.value
        if change.email is not None:
            if self.repo.email_taken(change.email, user.id):
                raise Conflict("That email is already taken.")
            user.email, user.email_key = change.email, change.email.lower()
        if change.password is not None:
            user.password_hash = hash_password(change.password)
            record(self.session, "user.password_changed", actor, f"user:{user.id}")
        self.session.flush()
        return UserPublic.model_validate(user)

    def delete(self, user_id: int, actor: Actor) -> None:
        """Delete a user; their logged predictions stay, with a null user id."""
        user = self._user(user_id)
        self._keep_an_admin(user)
        record(self.session, "user.deleted", actor, f"user:{user.id}", username=user.username)
        self.repo.delete(user)

    def _user(self, user_id: int) -> User:
        user = self.repo.get(user_id)
        if user is None:
            raise NotFound(f"User {user_id} not found.")
        return user

    def _end_sessions(self, user_id: int, reason: str) -> int:
        # Revoking the login sessions kills their refresh tokens and the access tokens bound to
        # them (``sid``), so re-enabling the account does not revive what was issued before.
        result = self.session.execute(
            update(LoginSession)
            .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_reason=reason)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def _keep_an_admin(self, user: User) -> None:
        if user.role == Role.ADMIN.value and user.enabled and self.repo.enabled_admins() <= 1:
            raise Conflict("This is the last enabled admin; keep at least one.")


def new_user(data: UserCreate) -> User:
    """An unsaved User row with a hashed password."""
    return User(
        username=data.username,
        username_key=data.username.lower(),
        email=data.email,
        email_key=data.email.lower() if data.email else None,
        password_hash=hash_password(data.password),
        role=data.role.value,
        enabled=data.enabled,
    )
