"""FastAPI dependencies, named as ``Annotated`` aliases: the state, the session, the caller and
the role checks every router shares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from modelserve.audit.service import Actor
from modelserve.auth.caller import Caller
from modelserve.core.errors import BadRequest, Unauthorized
from modelserve.state import AppState
from modelserve.users.models import Role


async def get_state(request: Request) -> AppState:
    """The process's shared resources."""
    state: AppState = request.app.state.modelserve
    return state


StateDep = Annotated[AppState, Depends(get_state)]

NAME_MAX_LENGTH = 128
"""The longest model name a route path takes."""
ALIAS_MAX_LENGTH = 64
"""The longest alias a route path takes."""

ModelNamePath = Annotated[str, Path(min_length=1, max_length=NAME_MAX_LENGTH)]
"""A model name in a route path."""

AliasPath = Annotated[
    str,
    Path(min_length=1, max_length=ALIAS_MAX_LENGTH, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
]
"""An alias name in a route path."""


def get_session(state: StateDep) -> Iterator[Session]:
    """One session per request, committed when the endpoint returns, rolled back if it raises."""
    with state.db.transaction() as session:
        yield session


# scope="function": commit before the response is sent, so a 2xx means the data is stored.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An access token or an API key.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")


def client_address(request: Request) -> str | None:
    """The peer address (behind a proxy, run uvicorn with --forwarded-allow-ips)."""
    return request.client.host if request.client else None


async def authenticate(
    state: AppState, bearer: str | None, api_key: str | None, address: str | None = None
) -> Caller:
    """The caller behind a bearer credential or an API key header; 401 without either. Failed
    API keys count against the client ``address``."""
    if api_key and bearer and api_key != bearer:
        raise BadRequest("Send one credential: Authorization or X-API-Key, not both.")
    credential = api_key or bearer
    if not credential:
        if state.anonymous is not None:
            return state.anonymous
        raise Unauthorized("Not authenticated: send Authorization: Bearer <token> or X-API-Key.")
    # Cached callers are answered on the event loop; a cache miss reads the database in a thread.
    caller = state.authenticator.from_cache(credential, address)
    if caller is not None:
        return caller
    return await anyio.to_thread.run_sync(state.authenticator.authenticate, credential, address)


async def get_caller(
    request: Request,
    state: StateDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key)],
) -> Caller:
    """The authenticated caller; 401 without valid credentials."""
    credential = bearer.credentials if bearer else None
    return await authenticate(state, credential, api_key, client_address(request))


def bearer_credential(request: Request) -> str | None:
    """What ``HTTPBearer(auto_error=False)`` reads: the credential of ``Authorization: Bearer``."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


SECURITY_OPENAPI: list[dict[str, list[str]]] = [{"HTTPBearer": []}, {"APIKeyHeader": []}]
"""The OpenAPI ``security`` of a route that authenticates through ``request_caller``."""


async def request_caller(request: Request) -> Caller:
    """``get_caller`` for the prediction hot path: one dependency instead of four. FastAPI
    resolves every sub-dependency of a request anew, which costs more than the rest of
    authentication; routes using this declare ``SECURITY_OPENAPI`` themselves."""
    state: AppState = request.app.state.modelserve
    api_key = request.headers.get("x-api-key") or None
    return await authenticate(state, bearer_credential(request), api_key, client_address(request))


CallerDep = Annotated[Caller, Depends(get_caller)]


def _requires(role: Role) -> object:
    async def check(caller: CallerDep) -> Caller:
        caller.require(role)
        return caller

    check.__name__ = f"require_{role.value}"
    return Depends(check)


MaintainerDep = Annotated[Caller, _requires(Role.MAINTAINER)]
AdminDep = Annotated[Caller, _requires(Role.ADMIN)]


async def get_actor(caller: CallerDep, request: Request) -> Actor:
    """The caller as the audit log records them."""
    return Actor(caller.user_id, caller.label, client_address(request))


ActorDep = Annotated[Actor, Depends(get_actor)]
