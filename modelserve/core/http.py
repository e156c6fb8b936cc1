"""Transport helpers: size-limited body reading, lenient-but-exact JSON parsing, a body-size
guard for every route."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.core.errors import ErrorBody, MalformedJSON, PayloadTooLarge, error_response


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (before reading, when declared)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Body of {declared} bytes is over the {limit}-byte limit.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Body is over the {limit}-byte limit.")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    """Parse JSON; ``NaN`` and ``Infinity`` literals are accepted here (so validation can say
    where they are not allowed) but anything else malformed is refused."""
    if not body.strip():
        raise MalformedJSON("Body is empty; expected JSON.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedJSON("Body is not valid JSON.", details={"error": str(exc)}) from exc


class BodySizeLimitMiddleware:
    """Refuse bodies over a limit with 413 before the app reads them. Predict routes are left to
    enforce the limit themselves, so that the refusal is logged against the model."""

    def __init__(self, app: ASGIApp, *, default_limit: int, upload_limit: int) -> None:
        self.app = app
        self.default_limit = default_limit
        self.upload_limit = upload_limit

    def _limit(self, scope: Scope) -> int | None:
        path: str = scope["path"]
        if path.endswith("/predict"):
            return None
        if path.rstrip("/") == "/v1/models" and scope["method"] == "POST":
            return self.upload_limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        limit = self._limit(scope) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            body = ErrorBody(
                code=PayloadTooLarge.code,
                message=f"Body of {int(declared)} bytes is over the {limit}-byte limit.",
            )
            await error_response(413, body)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise PayloadTooLarge(f"Body is over the {limit}-byte limit.")
            return message

        await self.app(scope, limited_receive, send)


_API_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"cache-control", b"no-store"),
]
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# The interactive docs load Swagger UI / ReDoc assets from their CDN.
_DOCS_CSP = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    b"img-src 'self' data: https://fastapi.tiangolo.com; font-src 'self' https://fonts.gstatic.com;"
    b" worker-src blob:; frame-ancestors 'none'",
)


class SecurityHeadersMiddleware:
    """Add security headers to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        csp = _DOCS_CSP if path.startswith(("/docs", "/redoc")) else _API_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [h for h in (*_API_HEADERS, csp) if h[0] not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
