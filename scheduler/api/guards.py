"""The request guard every HTTP request passes before any route runs (pure ASGI, nothing read yet).

In order:

1. ``Host`` must name this service (loopback names, the bound address, ``security.allowed_hosts``):
   a DNS-rebinding page cannot reach the API under its own host name (421).
2. A write (POST/PUT/PATCH/DELETE) from a browser page of another origin is refused (a foreign
   ``Origin``, or ``Sec-Fetch-Site: cross-site``/``same-site``; 403). With no API keys configured, a
   form-encodable write (multipart, urlencoded, text/plain: what an HTML form can post cross-site
   without a preflight) must also prove where it comes from: ``Sec-Fetch-Site: same-origin``, an
   ``Origin`` equal to this service's, or the ``X-Framescribe-Client`` header (403 ``origin_unproven``).
   So no page, in any browser, can submit, cancel or delete jobs on an open loopback API.
3. A request with a body is authenticated from its headers *before* its body is read (401), so
   nobody without a key can make the server read, buffer or wait for a body.
4. Every body is capped (413; multipart uploads to ``POST /v1/jobs`` at the upload cap) and must
   arrive within ``security.body_timeout_s`` plus its size at ``min_upload_bytes_per_s`` (408).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

from fastapi import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler.api import errors
from scheduler.api.deps import authenticate, is_loopback
from scheduler.api.errors import ApiError
from worker.config import Settings

BODY_LIMIT = 1024 * 1024  # JSON bodies; uploads have their own cap (scheduler.max_upload_bytes)
UPLOAD_SLACK = 64 * 1024 + 64 * 1024 * 1024  # form overhead + what intake drains past the cap for a clean 413
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PUBLIC_PATHS = ("/healthz", "/readyz")
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
CLIENT_HEADER = "x-framescribe-client"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})


def host_name(value: str) -> str:
    """The name part of a Host / Origin authority, lower-cased, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def allowed_host(name: str, settings: Settings) -> bool:
    bound = host_name(settings.scheduler.host)
    if name in LOOPBACK_NAMES or is_loopback(name) or name == bound:
        return True
    if any(name == host_name(h) for h in settings.security.allowed_hosts):
        return True
    # bound to every address with keys configured: the keys protect it, any name may be used
    wildcard = bound in ("0.0.0.0", "::", "")
    keyed = bool(settings.api_keys or settings.read_only_api_keys)
    if wildcard and keyed:
        return True
    try:  # a literal IP naming this host directly is not a rebinding (the page's origin is that IP)
        ipaddress.ip_address(name)
        return keyed
    except ValueError:
        return False


def cross_origin(headers: dict[str, str]) -> bool:
    """True when a browser says this request comes from a page of another origin (``same-site`` is
    another origin too: another port or sub-domain of the same site)."""
    if headers.get("sec-fetch-site", "") in ("cross-site", "same-site"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    parts = urlsplit(origin)
    return (parts.netloc or "").lower() != headers.get("host", "").lower()


def same_origin_proof(headers: dict[str, str]) -> bool:
    """The browser vouches that this request comes from this service's own page (or the user's own
    action: ``Sec-Fetch-Site: none``); headers a page cannot set or forge."""
    if headers.get("sec-fetch-site") in ("same-origin", "none"):
        return True
    origin = headers.get("origin")
    return origin is not None and not cross_origin(headers)


def unproven_write(headers: dict[str, str]) -> bool:
    """No-key mode: a write that might be a cross-site form post from an old browser (one that sends
    neither ``Origin`` nor ``Sec-Fetch-Site``): a form-encodable body without same-origin proof and
    without ``X-Framescribe-Client`` (a header no page can add cross-origin without a CORS preflight,
    which this service never grants). JSON and bodiless writes need a preflight or carry ``Origin``
    in every browser, so scripts (curl, httpx) keep working without a key on loopback."""
    if same_origin_proof(headers) or CLIENT_HEADER in headers:
        return False
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    return ctype in FORM_TYPES


def body_cap(scope: Scope, headers: dict[str, str], settings: Settings) -> int:
    multipart = headers.get("content-type", "").lower().startswith("multipart/")
    if multipart and scope.get("method") == "POST" and scope.get("path", "").rstrip("/") == "/v1/jobs":
        return settings.scheduler.max_upload_bytes + UPLOAD_SLACK
    return BODY_LIMIT


class RequestGuard:
    """Host, origin, auth-before-body, body cap and body deadline (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        s = self.settings
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        problem = self._refuse(scope, headers)
        if problem is not None:
            await errors.error_response(problem.status, problem.code, problem.message, None, problem.headers)(
                scope, receive, send
            )
            return
        limit = body_cap(scope, headers, s)
        started, seen, complete = time.monotonic(), 0, False

        async def guarded() -> Message:
            nonlocal seen, complete
            if complete:  # the body is in: what follows is the wait for a disconnect (streams), never timed
                return await receive()
            allowed = s.security.body_timeout_s + seen / s.security.min_upload_bytes_per_s
            remaining = started + allowed - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.01, remaining))
            except TimeoutError:
                raise HTTPException(408, "the request body did not arrive in time") from None
            if message["type"] == "http.request":
                complete = not message.get("more_body", False)
                seen += len(message.get("body", b""))
                if seen > limit:  # FastAPI re-raises HTTPException from body parsing (others become 400)
                    raise HTTPException(413, f"the body is larger than {limit} bytes")
            return message

        await self.app(scope, guarded, send)

    def _refuse(self, scope: Scope, headers: dict[str, str]) -> ApiError | None:
        s = self.settings
        name = host_name(headers.get("host", ""))
        if not name or not allowed_host(name, s):
            message = "this service does not answer to that host name (add it to security.allowed_hosts)"
            return ApiError(421, "wrong_host", message)
        method = scope.get("method", "GET")
        if method in WRITE_METHODS and cross_origin(headers):
            return ApiError(403, "cross_origin", "writes from pages of another origin are refused")
        keyless = not (s.api_keys or s.read_only_api_keys)
        if keyless and method in WRITE_METHODS and unproven_write(headers):
            message = (
                "without API keys, a form-encoded write must come from this service's own page or carry "
                "'X-Framescribe-Client: <name>' (e.g. curl -H 'X-Framescribe-Client: curl' -F file=@clip.mp4 ...)"
            )
            return ApiError(403, "origin_unproven", message)
        declared = headers.get("content-length", "")
        has_body = method in WRITE_METHODS or bool(declared and declared != "0") or "transfer-encoding" in headers
        if has_body and scope.get("path", "") not in PUBLIC_PATHS:
            try:
                authenticate(Request(scope), s)
            except ApiError as exc:
                return exc
        if declared.isdigit() and int(declared) > body_cap(scope, headers, s):
            return ApiError(413, "too_large", f"the body is larger than {body_cap(scope, headers, s)} bytes")
        return None


_URL_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


@contextlib.contextmanager
def url_check_slot(limit: int) -> Iterator[None]:
    """One of ``limit`` URL-check slots, or ApiError 503 at once: slow URL servers can hold at most
    ``limit`` worker threads, never the whole pool."""
    with _SLOTS_LOCK:
        sem = _URL_SLOTS.setdefault(limit, threading.BoundedSemaphore(limit))
    if not sem.acquire(blocking=False):
        raise ApiError(503, "busy", f"{limit} URL checks are already in progress; try again shortly",
                       field="url", headers={"Retry-After": "2"})  # fmt: skip
    try:
        yield
    finally:
        sem.release()


class StreamSlots:
    """Open event streams per client (API key id, or address in no-key mode), capped. A stream touches
    its slot on every poll; a slot untouched for ``stale_s`` (a stream that never started) is freed."""

    def __init__(self, stale_s: float = 60.0) -> None:
        self.stale_s = stale_s
        self._open: dict[str, dict[int, float]] = {}
        self._lock = threading.Lock()
        self._next = 0

    def take(self, who: str, limit: int) -> int | None:
        """A slot token, or None when ``who`` already holds ``limit`` live streams."""
        now = time.monotonic()
        with self._lock:
            mine = {t: seen for t, seen in self._open.get(who, {}).items() if now - seen < self.stale_s}
            if len(mine) >= limit:
                self._open[who] = mine
                return None
            self._next += 1
            mine[self._next] = now
            self._open[who] = mine
            return self._next

    def touch(self, who: str, token: int) -> None:
        with self._lock:
            if token in self._open.get(who, {}):
                self._open[who][token] = time.monotonic()

    def give(self, who: str, token: int) -> None:
        with self._lock:
            mine = self._open.get(who, {})
            mine.pop(token, None)
            if not mine:
                self._open.pop(who, None)
