"""Errors -> HTTP. Every 4xx/5xx body is ``{"error": {"code": str, "message": str, "field": str | null}}``.

For route authors (this module is shared by every router):

* raise ``ApiError(status, code, message, field=...)`` for HTTP-only conditions (409 "not ready", 413 ...);
* raise any ``worker.errors.FramescribeError`` and let ``install(app)`` map it: ``NotFound`` -> 404,
  ``InputError`` (``SourceError``, ``VideoOpenError``, ``PlanError`` ...) and ``BudgetExceeded`` -> 422,
  ``StoreError`` -> 503, others -> 500-class with their safe ``message``;
* request validation (unknown body fields, wrong types, bad JSON) becomes 422 naming the field;
* broker/Redis connection failures become 503 ``queue_unavailable``; anything else is a logged 500
  ``internal`` without details (tests treat that as a bug).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from scheduler.enqueue import QueueUnavailable
from worker.errors import (
    BudgetExceeded,
    ConfigError,
    DescriberError,
    FramescribeError,
    InputError,
    JobConflict,
    NotFound,
    StoreError,
)

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An error with its HTTP status; ``message`` is shown to the caller as is."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def status_of(exc: FramescribeError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, JobConflict):
        return 409
    if isinstance(exc, InputError | BudgetExceeded):
        return 422
    if isinstance(exc, StoreError | QueueUnavailable):
        return 503
    if isinstance(exc, DescriberError):
        return 502
    if isinstance(exc, ConfigError):
        return 503
    return 500


def _loc_field(loc: Sequence[Any]) -> str | None:
    """``("body", "fps")`` -> ``fps`` (FastAPI prefixes the request part; a model's own loc has none)."""
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or None


def validation_message(errors: Sequence[Any]) -> tuple[str, str, str | None]:
    """(code, message, field) for pydantic/FastAPI validation errors; names the first bad field."""
    first: dict[str, Any] = dict(errors[0]) if errors else {"type": "invalid", "loc": (), "msg": "invalid request"}
    field = _loc_field(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        code, message = "unknown_field", f"unknown field '{field}': remove it (see /docs for the accepted fields)"
    elif kind in ("json_invalid", "json_type"):
        code, field = "invalid_json", None
        message = "the body is not valid JSON" + (f" ({first['ctx']['error']})" if first.get("ctx") else "")
    elif kind == "missing":
        code, message = "missing_field", f"field '{field}' is required"
    else:
        code = "invalid_field"
        msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        message = f"{field}: {msg}" if field else msg
    more = len(errors) - 1
    if more > 0:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return code, message, field


def _is_queue_down(exc: BaseException) -> bool:
    try:
        from kombu.exceptions import OperationalError as KombuOperationalError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # pragma: no cover - both ship with celery[redis]
        return False
    return isinstance(exc, KombuOperationalError | RedisConnectionError | RedisTimeoutError | ConnectionError)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the same JSON shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)

    @app.exception_handler(FramescribeError)
    async def _fs_error(request: Request, exc: FramescribeError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc.message)
        return error_response(status, exc.code, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message, field = validation_message(exc.errors())
        return error_response(422, code, message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path}; the API lives under /v1 (see /docs)"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, code, detail, None, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if _is_queue_down(exc):
            log.warning("%s %s: queue unavailable: %s", request.method, request.url.path, exc)
            return error_response(
                503, "queue_unavailable", "the job queue (Redis) is not reachable; try again shortly", None,
                {"Retry-After": "5"},
            )  # fmt: skip
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal", "internal error; the server log has the details")
