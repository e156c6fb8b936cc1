"""The one error hierarchy, and its mapping to the one JSON error envelope.

    AppError (500 internal_error)
     +-- BadRequest (400 bad_request)
     |    +-- MalformedJSON (400 malformed_json)
     |    +-- NestingTooDeep (400 nesting_too_deep)
     +-- Unauthorized (401 not_authenticated)
     +-- Forbidden (403 forbidden)
     +-- NotFound (404 not_found)
     +-- RequestTimeout (408 request_timeout)
     +-- Conflict (409 conflict)
     +-- PayloadTooLarge (413 payload_too_large)
     |    +-- ArtifactTooLarge (413 artifact_too_large)
     +-- UnsupportedMediaType (415 unsupported_media_type)
     +-- ValidationFailed (422 validation_error)
     |    +-- UnsafeArtifact (422 unsafe_artifact)
     |    +-- InvalidArtifact (422 invalid_artifact)
     |    +-- ArtifactLimitExceeded (422 artifact_limit_exceeded)
     +-- TooManyRequests (429 rate_limited)
     +-- ModelUnavailable (503 model_unavailable)
     |    +-- ArtifactIntegrityError (503 artifact_integrity_error)
     +-- DatabaseUnavailable (503 database_unavailable)

Services raise these; they never know about HTTP. ``install_error_handlers`` turns them (and
FastAPI's own validation errors, unknown routes and crashes) into ``ErrorBody`` JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from modelserve.core.responses import ORJSONResponse

logger = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """The shape of every error response."""

    code: str = Field(description="Stable machine-readable error code.", examples=["not_found"])
    message: str = Field(description="What went wrong, for a person.")
    details: Any = Field(default=None, description="Structured specifics, e.g. every problem.")


class AppError(Exception):
    """Base of every error the application raises on purpose."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(
        self, message: str, details: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def to_body(self) -> ErrorBody:
        """The envelope for this error."""
        return ErrorBody(code=self.code, message=self.message, details=self.details)


class BadRequest(AppError):
    """The request cannot be understood."""

    status_code = 400
    code = "bad_request"


class MalformedJSON(BadRequest):
    """The body is not valid JSON."""

    code = "malformed_json"


class NestingTooDeep(BadRequest):
    """The JSON body nests arrays and objects deeper than the parser allows."""

    code = "nesting_too_deep"


class Unauthorized(AppError):
    """No valid credentials: missing, malformed, expired, revoked, or a disabled account."""

    status_code = 401
    code = "not_authenticated"

    def __init__(self, message: str = "Not authenticated.", details: Any = None) -> None:
        super().__init__(message, details, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    """Authenticated, but not allowed to do this."""

    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    """The thing asked for does not exist."""

    status_code = 404
    code = "not_found"


class RequestTimeout(AppError):
    """The body did not arrive in time; the connection is closed after the answer."""

    status_code = 408
    code = "request_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Connection": "close"})


class Conflict(AppError):
    """The request clashes with the current state."""

    status_code = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    """The body is over the configured limit."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    """The body is not JSON in UTF-8 (or, on upload routes, not a form)."""

    status_code = 415
    code = "unsupported_media_type"


class ValidationFailed(AppError):
    """The request is well-formed but its content is invalid; ``details`` lists every problem."""

    status_code = 422
    code = "validation_error"


class UnsafeArtifact(ValidationFailed):
    """A model file needs code we refuse to load."""

    code = "unsafe_artifact"


class InvalidArtifact(ValidationFailed):
    """A model file cannot be read or is not a usable model."""

    code = "invalid_artifact"


class ArtifactTooLarge(PayloadTooLarge):
    """A model archive declares more inflated content than the limits allow (a zip bomb)."""

    code = "artifact_too_large"


class ArtifactLimitExceeded(ValidationFailed):
    """Opening a model file took more memory or time than the sandbox allows."""

    code = "artifact_limit_exceeded"


class TooManyRequests(AppError):
    """A rate limit or quota is exhausted; ``Retry-After`` says for how long."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(
            message, {"retry_after": retry_after}, headers={"Retry-After": str(retry_after)}
        )


class ModelUnavailable(AppError):
    """A registered model cannot be served right now."""

    status_code = 503
    code = "model_unavailable"


class ArtifactIntegrityError(ModelUnavailable):
    """Stored artifact bytes no longer match the sha256 recorded at registration."""

    code = "artifact_integrity_error"


DATABASE_UNREACHABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout)
"""What SQLAlchemy raises when the database cannot be reached (or refuses to work right now)."""


class DatabaseUnavailable(AppError):
    """The request needs the database, which cannot be reached now; ``Retry-After`` says when to
    try again."""

    status_code = 503
    code = "database_unavailable"

    def __init__(
        self, message: str = "The database is unavailable; try again shortly.", retry_after: int = 5
    ) -> None:
        super().__init__(
            message, {"retry_after": retry_after}, headers={"Retry-After": str(retry_after)}
        )


def encodable(value: Any) -> Any:
    """``value`` with every string made encodable as UTF-8: an unpaired surrogate (which JSON
    text may carry as ``\\ud800``) becomes the six characters of its escape."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {encodable(k): encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encodable(v) for v in value]
    return value


def _json_response(
    content: Any, status_code: int, headers: Mapping[str, str] | None
) -> ORJSONResponse:
    try:
        return ORJSONResponse(content, status_code=status_code, headers=headers)
    except TypeError:  # a string orjson cannot encode (lone surrogate); rare, so retried here
        return ORJSONResponse(encodable(content), status_code=status_code, headers=headers)


def error_response(
    status_code: int, body: ErrorBody, headers: Mapping[str, str] | None = None
) -> Response:
    """Render an envelope (always encodable, whatever strings the error quotes)."""
    return _json_response(body.model_dump(mode="json"), status_code, headers)


def v2_status(status_code: int) -> int:
    """What the Open Inference Protocol answers for ``status_code``: bad input is a 400 there."""
    return 400 if status_code == 422 else status_code


def _respond(
    request: Request, status_code: int, body: ErrorBody, headers: Mapping[str, str] | None = None
) -> Response:
    if request.url.path == "/v2" or request.url.path.startswith("/v2/"):
        # The Open Inference Protocol reads {"error": "..."} and calls bad input a 400; the
        # envelope's fields stay alongside.
        content = {"error": body.message, **body.model_dump(mode="json")}
        return _json_response(content, v2_status(status_code), headers)
    return error_response(status_code, body, headers)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Malformed request",
        401: "Not authenticated",
        403: "Not allowed",
        404: "Not found",
        408: "The request's headers or body did not arrive in time",
        409: "Conflicts with the current state",
        413: "Body too large",
        415: "Not a JSON body (content type or encoding)",
        422: "Invalid content; details lists every problem",
        429: "Rate limited; see Retry-After",
        503: "Model or database unavailable; see Retry-After",
        500: "Internal error",
    }.items()
}
"""Responses every router declares, so the envelope appears in the OpenAPI schema."""


def validation_problems(
    exc: ValidationError | RequestValidationError, prefix: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Pydantic's errors as ``{"loc", "message", "type"}`` items, ``loc`` under ``prefix``."""
    return [
        {
            "loc": [*prefix, *(str(part) for part in err.get("loc", ()))],
            "message": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]


async def _app_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    if exc.status_code >= 500:
        logger.error("%s: %s", exc.code, exc.message)
    return _respond(request, exc.status_code, exc.to_body(), headers=exc.headers)


async def _request_validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = validation_problems(exc)
    if any(d["type"] == "json_invalid" for d in details):
        return _respond(
            request,
            400,
            ErrorBody(code=MalformedJSON.code, message="Body is not valid JSON.", details=details),
        )
    body = ErrorBody(code=ValidationFailed.code, message="Request is invalid.", details=details)
    return _respond(request, 422, body)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route of the app accepts on this path (Starlette names only the
    methods of the first route that matched the path)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    )


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, AppError):
        # FastAPI wraps whatever failed while it read the body (our size limit, read timeout,
        # media-type check) in a 400 "error parsing the body": answer the real error.
        return await _app_error_handler(request, exc.__cause__)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    body = ErrorBody(code=code, message=str(exc.detail))
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return _respond(request, exc.status_code, body, headers=headers)


async def _data_error_handler(request: Request, exc: Exception) -> Response:
    # The database refused a value the API let through (e.g. a NUL character in text).
    body = ErrorBody(
        code="invalid_value",
        message="A value cannot be stored or looked up.",
        details={"error": type(getattr(exc, "orig", exc)).__name__},
    )
    return _respond(request, 422, body)


async def _database_unreachable_handler(request: Request, exc: Exception) -> Response:
    logger.warning("database unavailable: %s", type(getattr(exc, "orig", exc)).__name__)
    error = DatabaseUnavailable()
    return _respond(request, error.status_code, error.to_body(), headers=error.headers)


async def _unhandled_handler(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error", exc_info=exc)
    return _respond(
        request, 500, ErrorBody(code="internal_error", message="Internal server error.")
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to the envelope, once, for the whole app."""
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(RequestValidationError, _request_validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(DataError, _data_error_handler)
    for unreachable in DATABASE_UNREACHABLE:
        app.add_exception_handler(unreachable, _database_unreachable_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
