"""User queries."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelserve.users.models import Role, User


class UserRepository:
    """Reads and writes users within the caller's session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, user_id: int) -> User | None:
        """A user by id."""
        return self.session.get(User, user_id)

    def by_username(self, username: str) -> User | None:
        """A user by name, ignoring case."""
        statement = select(User).where(User.username_key == username.lower())
        return self.session.scalars(statement).one_or_none()

    def taken(self, username: str, email: str | None) -> bool:
        """Whether the name or email (ignoring case) already belongs to someone."""
        condition = User.username_key == username.lower()
        if email:
            condition = condition | (User.email_key == email.lower())
        return self.session.scalar(select(func.count()).where(condition)) != 0

    def email_taken(self, email: str, except_id: int) -> bool:
        """Whether another user has this email."""
        statement = select(func.count()).where(
            User.email_key == email.lower(), User.id != except_id
        )
        return self.session.scalar(statement) != 0

    def all(self) -> Sequence[User]:
        """Every user by id."""
        return self.session.scalars(select(User).order_by(User.id)).all()

    def enabled_admins(self) -> int:
        """How many enabled admins there are."""
        statement = select(func.count()).where(User.role == Role.ADMIN.value, User.enabled)
        return int(self.session.scalar(statement) or 0)

    def add(self, user: User) -> User:
        """Insert a user."""
        self.session.add(user)
        self.session.flush()
        return user

    def delete(self, user: User) -> None:
        """Delete a user (keys and sessions cascade; predictions and audit keep a null id)."""
        self.session.delete(user)
        self.session.flush()
