"""What both DashScope transports (native SDK, OpenAI-compatible) share: parameters, replies, errors.

DashScope *returns* HTTP errors (dashscope-protocol §3.2); ``classify`` turns a status and code into
the framescribe error tree, so both transports end every failure the same way:

* 429 ``Throttling*``, 5xx, ``InternalError*``/``ModelUnavailable``, transport errors -> DescriberTransient
* 401/403 (``InvalidApiKey``, ``AccessDenied*``), 404 ``ModelNotFound`` -> DescriberAuthError (fails the job)
* other 4xx (``InvalidParameter``, ``DataInspectionFailed``, ...) -> DescriberRejected (fails the segment)
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from worker.errors import DescriberAuthError, DescriberError, DescriberRejected, DescriberTransient

AUTH_HINT = "check DASHSCOPE_API_KEY / model access"
TRANSIENT_CODES = ("Throttling", "InternalError", "SystemError", "RequestTimeOut", "ModelUnavailable",
                   "ServiceUnavailable", "ModelServingError", "limit_requests", "internal_error",
                   "service_unavailable", "model_unavailable")  # fmt: skip
AUTH_CODES = ("InvalidApiKey", "AccessDenied", "Model.AccessDenied", "AllocationQuota.FreeTierOnly",
              "invalid_api_key", "access_denied", "Arrearage")  # fmt: skip

OnText = Callable[[str, str], None]  # (delta, text so far)


@dataclass(frozen=True, slots=True)
class CallParams:
    """One model call's parameters (model, sampling and limits); never holds the API key."""

    model: str
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    vl_high_resolution_images: bool = False
    max_pixels: int | None = None
    stream: bool = False
    timeout_s: float = 120.0


@dataclass(frozen=True, slots=True)
class Reply:
    """What one successful call returned."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    video_tokens: int = 0  # visual tokens (video + image) as reported
    request_id: str | None = None
    visual_reported: bool = True  # False: the reply named no visual count (the caller uses its estimate)
    cached_tokens: int = 0
    http_attempts: int = 0  # model requests this result took (set by the describer, retries included)


class Transport(Protocol):
    """One attempt at a call; raises a DescriberError subclass on failure (the caller retries)."""

    name: str

    def video(
        self, system: str, prompt: str, frames: Sequence[str], fps: float, params: CallParams, on_text: OnText | None
    ) -> Reply:
        """Describe local JPEG ``frames`` (paths) played at ``fps``."""
        ...

    def text(self, system: str, prompt: str, params: CallParams) -> Reply:
        """A text-only call (summaries, JSON repair)."""
        ...


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def classify(
    status: int, code: str | None, message: str, request_id: str | None = None, retry_after: float | None = None
) -> DescriberError:
    """A DashScope error reply -> the framescribe error the pipeline acts on (see the module docstring)."""
    code = code or "Unknown"
    where = f" (request {request_id})" if request_id else ""
    text = f"DashScope {status} {code}: {message or 'no message'}{where}"
    if code.startswith(AUTH_CODES) or status in (401, 403):
        return DescriberAuthError(f"{text} — {AUTH_HINT}")
    if status == 404 or code.startswith("ModelNotFound") or code == "model_not_found":
        return DescriberAuthError(f"{text} — check the model name and {AUTH_HINT}")
    if code.startswith(TRANSIENT_CODES) or status == 429 or status >= 500:
        return DescriberTransient(text, retry_after_s=retry_after)
    return DescriberRejected(text)
