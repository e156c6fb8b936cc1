"""Who may manage API keys, and how wide a key a caller may create.

Login sessions (access tokens) of any role manage their own keys. API keys cannot manage keys
at all, except an admin's (admins' automation rotates keys; an admin key could create an admin
user and log in anyway, so refusing it would protect nothing). Whatever the credential, a key
created by an API key is never wider than that key: its models within the key's, a quota no
larger, an expiry no later.
"""

from __future__ import annotations

from modelserve.auth.caller import Caller
from modelserve.auth.schemas import ApiKeyCreate
from modelserve.core.errors import Forbidden


def require_key_management(caller: Caller) -> None:
    """Forbidden for an API key that is not an admin's."""
    if caller.api_key_id is not None and not caller.is_admin:
        raise Forbidden("API keys cannot manage API keys; log in (a user session) to do so.")


def require_within(caller: Caller, data: ApiKeyCreate) -> None:
    """Forbidden when ``data`` describes a key wider than the caller's own API key."""
    if caller.api_key_id is None:
        return
    if caller.key_models is not None and (
        data.models is None or not set(data.models) <= caller.key_models
    ):
        raise Forbidden("A key cannot create a key for models it may not use itself.")
    if caller.key_quota is not None and (
        data.quota_per_minute is None or data.quota_per_minute > caller.key_quota
    ):
        raise Forbidden("A key cannot create a key with a larger quota than its own.")
    expires = data.expires_at
    if caller.key_expires_at is not None and (
        expires is None or (expires.tzinfo is not None and expires > caller.key_expires_at)
    ):
        raise Forbidden("A key cannot create a key that outlives it.")
