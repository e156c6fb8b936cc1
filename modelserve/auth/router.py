"""Auth and API-key routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request, Response

from modelserve.auth.keys import ApiKeyService
from modelserve.auth.schemas import (
    Accepted,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    ApiKeysPublic,
    RefreshRequest,
    TokenPair,
)
from modelserve.auth.scopes import require_key_management, require_within
from modelserve.auth.service import AuthService
from modelserve.core.db import MAX_ID
from modelserve.core.errors import ERROR_RESPONSES, Forbidden
from modelserve.deps import ActorDep, CallerDep, SessionDep, StateDep, client_address
from modelserve.users.schemas import UserRegister

router = APIRouter(tags=["auth"], responses=ERROR_RESPONSES)


@router.post("/v1/auth/token", response_model=TokenPair, summary="Log in (OAuth2 password)")
def login(
    request: Request,
    state: StateDep,
    session: SessionDep,
    username: Annotated[str, Form(min_length=1, max_length=254)],
    password: Annotated[str, Form(min_length=1, max_length=256)],
) -> TokenPair:
    """An access token (short-lived JWT) and a refresh token, for a username and password."""
    return AuthService(session, state.auth).login(username, password, client_address(request))


@router.post("/v1/auth/refresh", response_model=TokenPair, summary="Rotate a refresh token")
def refresh(
    body: RefreshRequest, request: Request, state: StateDep, session: SessionDep
) -> TokenPair:
    """New tokens for a refresh token, which is then spent; reusing it revokes the session."""
    return AuthService(session, state.auth).refresh(body.refresh_token, client_address(request))


@router.post("/v1/auth/logout", status_code=204, summary="Log out")
def logout(
    body: RefreshRequest, request: Request, state: StateDep, session: SessionDep
) -> Response:
    """End the session of a refresh token; its access tokens stop working too."""
    AuthService(session, state.auth).logout(body.refresh_token, client_address(request))
    return Response(status_code=204)


@router.post("/v1/auth/register", response_model=Accepted, status_code=202, summary="Sign up")
def register(
    body: UserRegister, request: Request, state: StateDep, session: SessionDep
) -> Accepted:
    """Self-service sign-up when open registration is on (403 otherwise)."""
    return AuthService(session, state.auth).register(body, client_address(request))


@router.post(
    "/v1/api-keys", response_model=ApiKeyCreated, status_code=201, summary="Create an API key"
)
def create_api_key(
    body: ApiKeyCreate, caller: CallerDep, actor: ActorDep, session: SessionDep
) -> ApiKeyCreated:
    """A key for yourself (admins: for anyone). The secret is shown in this response only.
    Not with an API key, unless it is an admin's, and then never wider than that key."""
    require_key_management(caller)
    require_within(caller, body)
    owner = caller.user_id if body.user_id is None else body.user_id
    if owner != caller.user_id and not caller.is_admin:
        raise Forbidden("Only admins create keys for other users.")
    return ApiKeyService(session).create(body, owner, actor)


@router.get("/v1/api-keys", response_model=ApiKeysPublic, summary="List API keys")
def list_api_keys(caller: CallerDep, session: SessionDep) -> ApiKeysPublic:
    """Your keys (admins: everyone's). Not with a non-admin's API key."""
    require_key_management(caller)
    return ApiKeyService(session).list(None if caller.is_admin else caller.user_id)


@router.delete("/v1/api-keys/{key_id}", response_model=ApiKeyPublic, summary="Revoke an API key")
def revoke_api_key(
    key_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    caller: CallerDep,
    actor: ActorDep,
    session: SessionDep,
) -> ApiKeyPublic:
    """Revoke one of your keys (admins: anyone's). Not with a non-admin's API key."""
    require_key_management(caller)
    owner = None if caller.is_admin else caller.user_id
    return ApiKeyService(session).revoke(key_id, owner, actor)
