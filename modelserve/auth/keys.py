"""API keys: create (secret shown once), list, revoke; knows nothing of HTTP."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelserve.audit.service import Actor, record
from modelserve.auth.models import ApiKey
from modelserve.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, ApiKeysPublic
from modelserve.auth.tokens import new_api_key, sha256_token
from modelserve.core.clock import utcnow
from modelserve.core.errors import NotFound, ValidationFailed
from modelserve.users.repository import UserRepository


class ApiKeyService:
    """Keys of users, within one session (the caller commits).

    ``owner_id`` is whose keys an operation may touch; None means any user's (admins, CLI).
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, data: ApiKeyCreate, user_id: int, actor: Actor) -> ApiKeyCreated:
        """A new key for ``user_id``; the full key is in the result and nowhere else."""
        if UserRepository(self.session).get(user_id) is None:
            raise NotFound(f"User {user_id} not found.")
        if data.expires_at is not None and data.expires_at.tzinfo is None:
            raise ValidationFailed(
                "expires_at needs a timezone.", details=[{"loc": ["body", "expires_at"]}]
            )
        if data.expires_at is not None and data.expires_at <= utcnow():
            raise ValidationFailed(
                "expires_at is in the past.", details=[{"loc": ["body", "expires_at"]}]
            )
        key, prefix = new_api_key()
        row = ApiKey(
            user_id=user_id,
            name=data.name,
            prefix=prefix,
            key_hash=sha256_token(key),
            models=sorted(set(data.models)) if data.models is not None else None,
            quota_per_minute=data.quota_per_minute,
            expires_at=data.expires_at,
        )
        self.session.add(row)
        self.session.flush()
        record(
            self.session,
            "api_key.created",
            actor,
            f"api_key:{row.id}",
            prefix=prefix,
            user_id=user_id,
        )
        public = ApiKeyPublic.model_validate(row)
        return ApiKeyCreated(**public.model_dump(), key=key)

    def list(self, owner_id: int | None) -> ApiKeysPublic:
        """Keys of one user, or of everyone."""
        statement = select(ApiKey).order_by(ApiKey.id)
        if owner_id is not None:
            statement = statement.where(ApiKey.user_id == owner_id)
        keys = [ApiKeyPublic.model_validate(k) for k in self.session.scalars(statement)]
        return ApiKeysPublic(data=keys, count=len(keys))

    def revoke(self, key_id: int, owner_id: int | None, actor: Actor) -> ApiKeyPublic:
        """Revoke a key (idempotent); another user's key is NotFound for non-admins."""
        row = self.session.get(ApiKey, key_id)
        if row is None or (owner_id is not None and row.user_id != owner_id):
            raise NotFound(f"API key {key_id} not found.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            record(self.session, "api_key.revoked", actor, f"api_key:{row.id}", prefix=row.prefix)
            self.session.flush()
        return ApiKeyPublic.model_validate(row)
