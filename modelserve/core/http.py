"""Transport helpers: size-limited body reading, lenient-but-exact JSON parsing with a nesting
limit, and one middleware guarding every request body (size, media type, UTF-8, read time)."""

from __future__ import annotations

import asyncio
import codecs
import json
import time
from collections.abc import Callable, Generator
from typing import Any, cast

import numpy as np
import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.core.errors import (
    ErrorBody,
    MalformedJSON,
    NestingTooDeep,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    error_response,
)

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a JSON body may have. Real payloads nest 3 to 5 deep
(a V2 tensor of rank 4 is 6); deeper is refused at parse time, before anything walks it
recursively (the validator, the log encoder)."""

_JSON_SUBTYPE = "json"
_FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})
_UTF8 = frozenset({"utf-8", "utf8"})


def media_type_problem(content_type: str | None, *, also: frozenset[str] = frozenset()) -> str:
    """Why a body of ``content_type`` is not JSON in UTF-8 (empty when it is). JSON is
    ``application/json`` or ``application/*+json``, with no charset or UTF-8; a missing type is
    taken as JSON. ``also`` names other media types the route accepts."""
    if not content_type:
        return ""
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media in also:
        return ""
    kind, _, subtype = media.partition("/")
    if kind != "application" or not (subtype == _JSON_SUBTYPE or subtype.endswith("+json")):
        return f"Content-Type {media!r} is not accepted here; send application/json."
    for param in params.split(";"):
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in _UTF8:
            return f"Charset {charset!r} is not accepted; JSON bodies are UTF-8."
    return ""


def require_json(request: Request, *, also: frozenset[str] = frozenset()) -> None:
    """Refuse (415) a body whose Content-Type is not JSON in UTF-8 (or one of ``also``)."""
    problem = media_type_problem(request.headers.get("content-type"), also=also)
    if problem:
        raise UnsupportedMediaType(problem)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (before reading, when declared) and
    any but a JSON media type (415)."""
    binary = request.headers.get(_V2_BINARY_HEADER) is not None
    require_json(request, also=_BINARY_TYPES if binary else frozenset())
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
    """Parse UTF-8 JSON; ``NaN`` and ``Infinity`` literals are accepted here (so validation can
    say where they are not allowed) but anything else malformed, nested deeper than
    ``MAX_JSON_DEPTH`` or in another encoding is refused."""
    return parse_json_text(body)[0]


def parse_json_text(body: bytes) -> tuple[Any, bytes | None]:
    """``parse_json``, and the body as one line of JSON text the prediction log may keep as it
    came: when orjson took it (strict JSON: no NaN, no lone surrogate) and it spells no NUL
    character (which PostgreSQL cannot store); else None. Line breaks, whitespace in strict
    JSON, become spaces."""
    if not body or body.isspace():  # strip() would copy the whole body
        raise MalformedJSON("Body is empty; expected JSON.")
    strict = True
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value, strict = _parse_lenient(body), False
    check_depth(body)
    return value, log_text(body) if strict else None


def log_text(body: bytes) -> bytes | None:
    """A body of strict JSON as one line of text the prediction log may keep: line breaks
    (whitespace there) become spaces; None when it spells a NUL character (which PostgreSQL
    cannot store)."""
    if b"\\" in body and b"\\u0000" in body:  # one memchr first: most bodies have no backslash
        return None
    if b"\n" in body or b"\r" in body:
        return body.replace(b"\n", b" ").replace(b"\r", b" ")
    return body


def _parse_lenient(body: bytes) -> Any:
    # Only after orjson refused: decode strictly first, as json.loads(bytes) would also take
    # UTF-16 and UTF-32 (a JSON text has no NUL character, which those encodings are full of).
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsupportedMediaType("Body is not UTF-8; JSON bodies are UTF-8.") from exc
    if "\x00" in text:
        raise UnsupportedMediaType("Body has NUL bytes; JSON bodies are UTF-8.")
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise _too_deep() from exc
    except ValueError as exc:
        raise MalformedJSON("Body is not valid JSON.", details={"error": str(exc)}) from exc


def _too_deep() -> NestingTooDeep:
    return NestingTooDeep(
        f"JSON nests deeper than {MAX_JSON_DEPTH} levels.", details={"max_depth": MAX_JSON_DEPTH}
    )


_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')


def json_depth(body: bytes) -> int:
    """How deep ``body`` (valid JSON) nests arrays and objects, counted without recursion and
    at C speed: escaped backslashes and quotes dropped (so every quote left opens or closes a
    string), then everything but brackets and quotes, then the strings; the depth is the
    deepest running count of openers."""
    unescaped = body
    if b"\\" in body:  # a search for one byte is fast; a replace of two is not
        unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = b"".join(unescaped.translate(None, _NOT_STRUCTURE).split(b'"')[::2])
    if not skeleton:
        return 0
    brackets = np.frombuffer(skeleton, np.uint8)
    opens = (brackets == ord("[")) | (brackets == ord("{"))
    return int(np.cumsum(np.where(opens, 1, -1)).max())


def check_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse (400) a JSON body nesting arrays and objects deeper than ``limit``."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return  # cannot nest deeper than it has brackets: most single-row requests
    if json_depth(body) > limit:
        raise _too_deep()


class RequestBodyMiddleware:
    """Guard every request body before the app reads it.

    * Size: over the limit is 413, before reading when declared. Predict routes enforce the
      limit themselves, so that the refusal is logged against the model.
    * Media type: a body must be JSON in UTF-8 (``media_type_problem``), or a form on routes
      that take forms; else 415. Predict and infer routes check in ``read_body`` (logged).
    * Read time: each chunk must come within ``body_timeout`` seconds of the last, and, except
      on the model upload (large files on slow links), the whole body within ``body_timeout``
      of the first read; else 408 and the connection is closed.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        default_limit: int,
        upload_limit: int,
        body_timeout: float,
        accepts_form: Callable[[Scope], bool],
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        self.upload_limit = upload_limit
        self.body_timeout = body_timeout
        self.accepts_form = accepts_form

    def _limit(self, scope: Scope) -> int | None:
        path: str = scope["path"]
        if path.endswith("/predict"):
            return None
        if _is_upload(scope):
            return self.upload_limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http" or scope["method"] in _BODILESS:
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, self._guarded(scope, receive), send)

    def _refusal(self, scope: Scope) -> ASGIApp | None:
        headers = dict(scope["headers"])
        limit = self._limit(scope)
        declared = headers.get(b"content-length", b"")
        if limit is not None and declared.isdigit() and int(declared) > limit:
            message = f"Body of {int(declared)} bytes is over the {limit}-byte limit."
            return error_response(413, ErrorBody(code=PayloadTooLarge.code, message=message))
        has_body = (declared.isdigit() and int(declared) > 0) or b"transfer-encoding" in headers
        if not has_body or _reads_own_body(scope):
            return None
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        problem = media_type_problem(content_type)
        if problem and not (_is_form(content_type) and self.accepts_form(scope)):
            body = ErrorBody(code=UnsupportedMediaType.code, message=problem)
            return error_response(415, body)
        return None

    def _guarded(self, scope: Scope, receive: Receive) -> Receive:
        limit = self._limit(scope)
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
        check_text = not _reads_own_body(scope) and not media_type_problem(content_type)
        decoder = codecs.getincrementaldecoder("utf-8")() if check_text else None
        deadline = None if _is_upload(scope) else self.body_timeout
        clock = _BodyClock(self.body_timeout, deadline)
        received = 0

        async def guarded_receive() -> Message:
            nonlocal received
            message = await clock.receive(receive)
            chunk: bytes = message.get("body", b"")
            received += len(chunk)
            if limit is not None and received > limit:
                raise PayloadTooLarge(f"Body is over the {limit}-byte limit.")
            if decoder is not None and message["type"] == "http.request":
                _check_utf8(decoder, chunk, final=not message.get("more_body", False))
            return message

        return guarded_receive


_BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
# Binary tensors (the V2 binary extension) are sent as application/octet-stream.
_BINARY_TYPES = frozenset({"application/octet-stream"})
_V2_BINARY_HEADER = "inference-header-content-length"


def _is_form(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() in _FORM_TYPES


def _is_upload(scope: Scope) -> bool:
    return bool(scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/models")


def _reads_own_body(scope: Scope) -> bool:
    path: str = scope["path"]
    return path.endswith(("/predict", "/infer"))


def _check_utf8(decoder: codecs.IncrementalDecoder, chunk: bytes, *, final: bool) -> None:
    try:
        decoder.decode(chunk, final=final)
    except UnicodeDecodeError as exc:
        raise UnsupportedMediaType("Body is not UTF-8; JSON bodies are UTF-8.") from exc
    if b"\x00" in chunk:  # UTF-16 and UTF-32 text is valid UTF-8 full of NULs; JSON has none
        raise UnsupportedMediaType("Body has NUL bytes; JSON bodies are UTF-8.")


class _BodyClock:
    """Times the body's arrival: at most ``gap`` seconds per chunk, and the whole body within
    ``total`` seconds (None: no bound) of the first read. After the last chunk, receive waits
    unbounded (Starlette listens for the disconnect while it streams a response)."""

    def __init__(self, gap: float, total: float | None) -> None:
        self.gap = gap
        self.total = total
        self.started: float | None = None
        self.done = False

    async def receive(self, receive: Receive) -> Message:
        if self.done:
            return await receive()
        now = time.monotonic()
        if self.started is None:
            self.started = now
        wait = self.gap
        if self.total is not None:
            wait = min(wait, self.started + self.total - now)
        waiting = receive().__await__()
        try:
            pending = waiting.send(None)
        except StopIteration as arrived:  # the body was in already: nothing to time
            message: Message = arrived.value
        else:
            try:  # asyncio's own timeout: a little cheaper than an anyio cancel scope
                async with asyncio.timeout(max(wait, 0.0)):
                    message = await _Resumed(waiting, pending)
            except TimeoutError:
                raise RequestTimeout(f"The body did not arrive within {self.gap:g} s.") from None
        self.done = message["type"] != "http.request" or not message.get("more_body", False)
        return message


class _Resumed:
    """An awaitable already stepped once (``pending``: what it yielded, the future it waits
    for), to be awaited on from there, as ``await`` would have gone on. The body clock steps
    ``receive()`` itself: most bodies are in when the app reads them, and then the message
    comes back at once, with no timer armed and cancelled (``asyncio.timeout`` costs 4 us)."""

    def __init__(self, waiting: Generator[Any, Any, Message], pending: Any) -> None:
        self.waiting = waiting
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Message]:
        waiting, pending = self.waiting, self.pending
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                waiting.close()
                raise
            except BaseException as exc:  # the task's cancellation, thrown in where it waits
                pending, done = _step(waiting, exc)
            else:
                pending, done = _step(waiting, sent, thrown=False)
            if done is not None:
                return done


def _step(
    waiting: Generator[Any, Any, Message], value: Any, *, thrown: bool = True
) -> tuple[Any, Message | None]:
    """Send ``value`` (or throw it) into ``waiting``: what it yields next, or its result."""
    try:
        return (waiting.throw(value) if thrown else waiting.send(value)), None
    except StopIteration as finished:
        return None, cast(Message, finished.value)


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
