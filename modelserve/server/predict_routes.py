"""The prediction routes' direct path: ``PredictRoutes`` answers a well-formed POST to a v1
predict or V2 infer route without FastAPI's routing and dependency solving.

On a one-row prediction those took about a quarter of the server's CPU: Starlette tries the
routes, FastAPI's included-router context, request handler and dependency solver run, and every
path parameter is validated by pydantic, for routes whose handlers read their own body and
authenticate in one call (``inference.router.quota_caller``). This middleware sits inside the
security-header and body-guard middleware, so those still apply; it matches the five route
shapes itself and calls the same handlers as the routes do (``inference.router.predict_path``,
``protocols.v2.router.infer_path``), mapping what they raise with the app's own exception
handlers. A path whose parameters are not plainly valid (a name over 128 characters, a version
that is not a positive integer in canonical form, an empty alias...) goes on to FastAPI, which
answers it exactly as before; so do the routes' documentation and every other route.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from modelserve.auth.caller import Caller
from modelserve.core.db import MAX_ID
from modelserve.deps import ALIAS_MAX_LENGTH, NAME_MAX_LENGTH
from modelserve.inference.router import predict_path, quota_caller
from modelserve.lifecycle.routing import Target
from modelserve.protocols.v2.router import infer_path

Handler = Callable[[Request, Caller, Target], Awaitable[Response]]

_ROUTES: list[tuple[re.Pattern[str], str, Handler]] = [
    (re.compile(r"/v1/models/([^/]+)/predict"), "", predict_path),
    (re.compile(r"/v1/models/([^/]+)/versions/([1-9][0-9]*)/predict"), "version", predict_path),
    (re.compile(r"/v1/models/([^/]+)/aliases/([^/]+)/predict"), "alias", predict_path),
    (re.compile(r"/v2/models/([^/]+)/infer"), "", infer_path),
    (re.compile(r"/v2/models/([^/]+)/versions/([1-9][0-9]*)/infer"), "version", infer_path),
]


def _target(path: str) -> tuple[Target, Handler] | None:
    """The target and handler of a prediction route path whose parameters are plainly valid;
    None for anything else (FastAPI then answers it)."""
    if not path.endswith(("/predict", "/infer")):
        return None
    for pattern, kind, handler in _ROUTES:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        name = match.group(1)
        if len(name) > NAME_MAX_LENGTH:
            return None
        if kind == "version":
            version = int(match.group(2))
            return (Target(name, version=version), handler) if version <= MAX_ID else None
        if kind == "alias":
            alias = match.group(2)
            return (Target(name, alias=alias), handler) if len(alias) <= ALIAS_MAX_LENGTH else None
        return Target(name), handler
    return None


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class PredictRoutes:
    """Answers prediction requests directly; see the module doc."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] == "http" and scope["method"] == "POST":
            found = _target(_route_path(scope))
            if found is not None:
                await self._answer(scope, receive, send, *found)
                return
        await self.app(scope, receive, send)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, target: Target, handler: Handler
    ) -> None:
        request = Request(scope, receive, send)
        try:
            response = await handler(request, await quota_caller(request), target)
        except Exception as exc:
            mapped = _exception_handler(scope["app"].exception_handlers, exc)
            if mapped is None:
                raise  # the server error middleware answers 500 (and logs it), as for any route
            response = await mapped(request, exc)
        await response(scope, receive, send)


def _exception_handler(
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]], exc: Exception
) -> Callable[[Request, Exception], Awaitable[Response]] | None:
    """The handler Starlette's exception middleware would pick for ``exc`` (by its classes, most
    specific first); not the one for ``Exception``, which the server error middleware runs."""
    for kind in type(exc).__mro__:
        if kind is Exception:
            return None
        if kind in handlers:
            return handlers[kind]
    return None
