"""User schemas, named by role: UserCreate, UserUpdate, UserPublic, UsersPublic."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from modelserve.auth.passwords import MIN_PASSWORD_LENGTH
from modelserve.users.models import Role

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Password = Field(min_length=MIN_PASSWORD_LENGTH, max_length=256)


class UserCreate(BaseModel):
    """A new account (admins choose the role)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN)
    email: EmailStr | None = None
    password: str = Password
    role: Role = Role.USER
    enabled: bool = True


class UserRegister(BaseModel):
    """Self-service sign-up (only when open registration is on)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN)
    email: EmailStr
    password: str = Password


class UserUpdate(BaseModel):
    """Fields an admin may change; omitted ones stay."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    role: Role | None = None
    email: EmailStr | None = None
    password: str | None = Field(default=None, min_length=MIN_PASSWORD_LENGTH, max_length=256)


class UserPublic(BaseModel):
    """A user as the API shows it (never the hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str | None
    role: Role
    enabled: bool
    created_at: datetime


class UsersPublic(BaseModel):
    """A list of users."""

    data: list[UserPublic]
    count: int
