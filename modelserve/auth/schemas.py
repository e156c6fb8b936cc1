"""Auth and API-key schemas."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from modelserve.core.db import MAX_ID


class TokenPair(BaseModel):
    """A login's tokens."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int = Field(description="Seconds the access token is valid.")
    refresh_token: str
    refresh_expires_in: int


class RefreshRequest(BaseModel):
    """A refresh token to rotate or revoke."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=200)


class Accepted(BaseModel):
    """An answer that deliberately says nothing about which accounts exist."""

    status: str = "accepted"
    message: str


class ApiKeyCreate(BaseModel):
    """A new API key."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    user_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="Admins only: create for this user."
    )
    expires_at: datetime | None = None
    models: list[str] | None = Field(
        default=None, max_length=100, description="Only these models; all when omitted."
    )
    quota_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)


class ApiKeyPublic(BaseModel):
    """An API key as lists show it (never the secret)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    name: str
    prefix: str
    models: list[str] | None
    quota_per_minute: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    """A new key, with its secret shown this one time."""

    key: str


class ApiKeysPublic(BaseModel):
    """A list of API keys."""

    data: list[ApiKeyPublic]
    count: int
