"""Access JWTs (short-lived, HS256) and opaque refresh tokens / API keys (stored as sha256)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from modelserve.core.db import MAX_ID
from modelserve.core.errors import Unauthorized

ALGORITHM = "HS256"
API_KEY_PREFIX = "msk_"


@dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says."""

    user_id: int
    role: str
    session_id: uuid.UUID
    jti: str
    expires_at: datetime


class TokenSigner:
    """Issues and verifies access tokens for one issuer/audience and key."""

    def __init__(self, key: bytes, *, issuer: str, audience: str, lifetime: timedelta) -> None:
        self._key = key
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime

    def issue(self, user_id: int, role: str, session_id: uuid.UUID, now: datetime) -> str:
        """A signed access token valid for ``lifetime`` from ``now``."""
        claims = {
            "sub": str(user_id),
            "role": role,
            "sid": str(session_id),
            "iat": int(now.timestamp()),
            "exp": int((now + self.lifetime).timestamp()),
            "iss": self.issuer,
            "aud": self.audience,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str) -> AccessClaims:
        """Claims of a valid token; Unauthorized for anything forged, expired or foreign."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["sub", "exp", "iat", "iss", "aud", "jti", "sid"]},
            )
            return AccessClaims(
                user_id=_user_id(claims["sub"]),
                role=str(claims["role"]),
                session_id=uuid.UUID(str(claims["sid"])),
                jti=str(claims["jti"]),
                expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("Access token expired.") from exc
        except (jwt.InvalidTokenError, KeyError, ValueError, TypeError) as exc:
            raise Unauthorized("Invalid access token.") from exc


def _user_id(subject: object) -> int:
    """The user id a ``sub`` claim names; ValueError for anything no user row can have."""
    if not isinstance(subject, str) or not subject.isascii() or not subject.isdigit():
        raise ValueError("sub is not a user id")
    if len(subject) > 10 or not 1 <= int(subject) <= MAX_ID:
        raise ValueError("sub is out of range")
    return int(subject)


def sha256_token(token: str) -> str:
    """The stored form of an opaque token or key (high-entropy, so a fast hash is enough)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_refresh_token() -> str:
    """A fresh opaque refresh token."""
    return secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """(full key shown once, its visible prefix)."""
    prefix = API_KEY_PREFIX + secrets.token_hex(4)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def api_key_prefix(key: str) -> str | None:
    """The prefix of something shaped like one of our API keys, else None."""
    if not key.startswith(API_KEY_PREFIX):
        return None
    head = key[: len(API_KEY_PREFIX) + 8]
    return head if len(key) > len(head) + 1 and key[len(head)] == "_" else None
