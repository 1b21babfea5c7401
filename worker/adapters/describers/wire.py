"""One attempt on the wire: every HTTP request counted, none re-sent behind our back, one deadline.

The ``dashscope`` SDK re-sends a request once when the connection drops before a response
(``_send_with_retry`` in ``api_entities/http_request.py``): a reply lost after the server processed the
request would be billed twice without the project knowing. Each call therefore gets its own
``CountingSession`` (passed as the SDK's ``session=``), which counts every request, refuses the SDK's
second send (the project's own retry makes the next attempt, bounded by ``max_attempts``) and bounds
every request by what is left of the attempt's deadline (policy + uploads + generation together).
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests

from worker.errors import DescriberTransient

log = logging.getLogger(__name__)


class _SdkNoise(logging.Filter):
    """The SDK logs a full traceback ("Request failed") for every failed request; our retry loop already
    logs one line per attempt, so those records are dropped (the rest of the SDK's logging is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.getMessage() == "Request failed" and record.exc_info)


logging.getLogger("dashscope").addFilter(_SdkNoise())


class ResendRefused(requests.RequestException):
    """The SDK tried to send the same request a second time; the project retries instead."""


@dataclass
class Attempt:
    """What one attempt sent: requests by kind, whether a reply was lost after sending, its deadline."""

    deadline: float
    timeout_s: float
    generation: int = 0  # model requests (generation / chat completions)
    policy: int = 0
    uploads: int = 0
    lost: bool = False  # a request was sent and its reply never came (it may have been billed)
    phase: str = "start"
    errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return self.generation + self.policy + self.uploads

    def remaining(self, phase: str) -> float:
        """Seconds left for the next request; raises DescriberTransient once the deadline has passed."""
        self.phase = phase
        left = self.deadline - time.monotonic()
        if left <= 0.05:
            raise DescriberTransient(
                f"the attempt passed its deadline of {self.timeout_s:g}s (dashscope.timeout_s) during {phase}"
            )
        return left


_current: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar("framescribe_attempt", default=None)


@contextmanager
def attempt(timeout_s: float) -> Iterator[Attempt]:
    """The scope of one attempt: transports find it with ``current()``."""
    att = Attempt(time.monotonic() + timeout_s, timeout_s)
    token = _current.set(att)
    try:
        yield att
    finally:
        _current.reset(token)


def current() -> Attempt:
    """The attempt in progress, or a fresh one (a transport used on its own) with a generous deadline."""
    att = _current.get()
    return att if att is not None else Attempt(time.monotonic() + 300.0, 300.0)


def was_sent(exc: BaseException) -> bool:
    """Whether a failed request reached the server (a reset or a read timeout) rather than failing to
    connect: then its reply was lost and the server may have processed (and billed) it."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    text = repr(exc)
    return not any(s in text for s in ("NewConnectionError", "Connection refused", "NameResolutionError"))


class CountingSession(requests.Session):
    """A one-call session for the SDK: counts the request, refuses a re-send, applies the deadline."""

    def __init__(self, att: Attempt, kind: str = "generation") -> None:
        super().__init__()
        self._att = att
        self._kind = kind
        self._sent = False

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        att = self._att
        if self._sent:
            raise ResendRefused(f"the SDK tried to re-send the request ({'; '.join(att.errors) or 'no reply'})")
        timeout = att.remaining(self._kind)
        kwargs["timeout"] = min(float(kwargs.get("timeout") or timeout), timeout)
        self._sent = True
        att.generation += 1
        try:
            verb = method if isinstance(method, str) else method.decode()
            return super().request(verb, url if isinstance(url, str) else url.decode(), *args, **kwargs)
        except requests.RequestException as exc:
            att.errors.append(f"{type(exc).__name__}")
            att.lost = att.lost or was_sent(exc)
            raise
