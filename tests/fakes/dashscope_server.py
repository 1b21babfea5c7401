"""Loopback fake of the DashScope HTTP service (native API + OpenAI-compatible mode).

The real, unmodified ``dashscope`` SDK and the ``openai`` client talk to it; see
``/work/shared/dashscope-protocol.md`` (sections 1-3, 5 and the checklist in 7). Standard library only.

Routes (all on 127.0.0.1):

* ``GET  /api/v1/uploads?action=getPolicy&model=M``      -> OSS upload policy (``upload_host`` = this server)
* ``POST /__oss__/dashscope-file-mgr``                    -> multipart OSS upload (200; 409 on duplicate key)
* ``POST /api/v1/services/aigc/multimodal-generation/generation``  -> JSON or SSE (``X-DashScope-SSE``)
* ``POST /compatible-mode/v1/chat/completions``           -> OpenAI ``chat.completion`` JSON or SSE

Token accounting (``video_tokens``/``image_tokens``) follows section 4.3 of the protocol doc:

* factor ``f`` = 32 px for qwen-vl-max/-plus (``-latest`` and snapshots >= 2025-08-13/15), Qwen3*, Qwen3.5+;
  28 px for QVQ, Qwen2/2.5-VL and older qwen-vl-max/plus snapshots (``qwen-vl-max-2025-04-08``, ``-0809``).
* per-frame ``max_px = max(min(VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS / n * 2), int(1.05 * VIDEO_MIN_PIXELS))``,
  then ``smart_resize`` (round to multiples of f, shrink with floor / grow with ceil) of the *first* frame.
* constants: 32 px uses the doc's Qwen3-VL-Plus row (VIDEO_MIN_PIXELS = 4*32^2, which the doc states, rather
  than 128*f^2; VIDEO_MAX_PIXELS = 640*32^2; VIDEO_TOTAL_PIXELS = 131072*32^2); 28 px uses the Qwen2.5-VL row
  (128*28^2, 768*28^2, 65536*28^2). They reproduce the doc's worked examples exactly
  (4x640x480 -> 602/784, 16x1280x720 -> 4754/5762, 64x1280x720 -> 19010/23042).
* ``video_tokens = ceil(n / 2) * (h/f) * (w/f) + 2``; text tokens are approximated as ``len(text) // 4 + 1``.

Money and faults (issue 15): every request the fake *processed* is billed in ``billed`` (a reply lost
to ``reset_after`` is billed too, as the real service would); ``usage_field`` picks how visual tokens
are reported (``both`` | ``video_tokens`` | ``image_tokens`` | ``details`` | ``none``);
``video_max_pixels`` = ``ignore`` bills frame lists at their real size whatever ``max_pixels`` says;
``video_bill_factor`` = N bills (and reports) N times the documented video tokens: a service whose bill
exceeds the client's estimate, so only the running caps can stop the job;
``outage(seconds)`` answers 503 to every request (getPolicy, uploads, model calls) for a while;
``policy_behavior`` / ``upload_behavior`` may ``hang``. ``/services/aigc/text-generation/generation``
serves text models (``dashscope.Generation``), recorded as ``generation`` requests.

Limitations: ``video`` given as a single URL/file (not a frame list) is rejected with 400 (the fake only
understands frame lists); ``http(s)://`` media is served only from ``FakeDashScope.remote_files``.

Run standalone: ``python -m tests.fakes.dashscope_server --port 8765 [--latency 0.5]``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import math
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import HeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "COMPAT_ERRORS",
    "ERROR_PRESETS",
    "Behavior",
    "FakeDashScope",
    "RecordedRequest",
    "VideoItem",
    "frame_limit",
    "image_size",
    "image_tokens",
    "smart_resize",
    "text_tokens",
    "token_factor",
    "video_tokens",
]

GENERATION_PATH = "/api/v1/services/aigc/multimodal-generation/generation"
TEXT_GENERATION_PATH = "/api/v1/services/aigc/text-generation/generation"
POLICY_PATH = "/api/v1/uploads"
OSS_PREFIX = "/__oss__/"
OSS_BUCKET_PATH = "/__oss__/dashscope-file-mgr"
COMPAT_PATH = "/compatible-mode/v1/chat/completions"
OSS_ACCESS_KEY_ID = "fake-oss-access-key-id"
_OSS_SECRET = b"fake-oss-secret"

# --------------------------------------------------------------------------------------------------
# Token maths (protocol doc section 4.3)

#: factor -> (VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS)
VIDEO_PIXEL_LIMITS: dict[int, tuple[int, int, int]] = {
    32: (4 * 32 * 32, 640 * 32 * 32, 131072 * 32 * 32),
    28: (128 * 28 * 28, 768 * 28 * 28, 65536 * 28 * 28),
}
#: factor -> default image max_pixels (2560 tokens for 32 px, 1280 tokens for 28 px)
IMAGE_DEFAULT_MAX_PIXELS: dict[int, int] = {32: 2560 * 32 * 32, 28: 1280 * 28 * 28}
_SNAPSHOT_RE = re.compile(r"^qwen-vl-(max|plus)-(\d{4}-\d{2}-\d{2}|\d{4})$")
_SNAPSHOT_32PX_SINCE = {"max": "2025-08-13", "plus": "2025-08-15"}


def token_factor(model: str) -> int:
    """Pixels per visual-token side: 32 (Qwen3*, qwen-vl-max/plus current) or 28 (Qwen2.5-VL, QVQ, old)."""
    m = model.lower()
    if m.startswith(("qvq", "qwen2.5-vl", "qwen2-vl", "qwen-vl-ocr")):
        return 28
    snap = _SNAPSHOT_RE.match(m)
    if snap:
        family, date = snap.groups()
        if len(date) == 4 or date < _SNAPSHOT_32PX_SINCE[family]:
            return 28
    return 32


def frame_limit(model: str) -> int:
    """Maximum number of frames in an image-list video (minimum is always 4)."""
    m = model.lower()
    if m.startswith(("qwen3.5", "qwen3.6", "qwen3.7")):
        return 8000
    if any(k in m for k in ("qwen3-vl-plus", "qwen3-vl-flash", "qwen3-vl-235b-a22b")):
        return 2000
    return 512


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """qwen-vl-utils ``smart_resize``: (h, w) rounded to multiples of ``factor`` within the pixel bounds."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be <= 200, got {height}x{width}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def video_tokens(n_frames: int, width: int, height: int, model: str, max_pixels: int | None = None) -> int:
    """Tokens billed for an image-list video of ``n_frames`` frames of ``width`` x ``height`` pixels.

    ``max_pixels`` (the per-item ``max_pixels`` key) can only lower the per-frame pixel cap.
    """
    if n_frames <= 0:
        raise ValueError("n_frames must be positive")
    f = token_factor(model)
    min_px, max_px_cap, total_px = VIDEO_PIXEL_LIMITS[f]
    max_px = max(min(max_px_cap, total_px / n_frames * 2), int(min_px * 1.05))
    if max_pixels is not None:
        max_px = max(min(max_px, max_pixels), min_px)
    h_bar, w_bar = smart_resize(height, width, f, min_px, int(max_px))
    return math.ceil(n_frames / 2) * (h_bar // f) * (w_bar // f) + 2


def image_tokens(
    width: int, height: int, model: str, max_pixels: int | None = None, high_resolution: bool = False
) -> int:
    """Tokens billed for one image (``vl_high_resolution_images`` -> 16384-token cap)."""
    f = token_factor(model)
    max_px = 16384 * f * f if high_resolution else min(max_pixels or IMAGE_DEFAULT_MAX_PIXELS[f], 16384 * f * f)
    h_bar, w_bar = smart_resize(height, width, f, 4 * f * f, max_px)
    return (h_bar // f) * (w_bar // f) + 2


def text_tokens(text: str) -> int:
    """Crude text token estimate used by the fake: ``len(text) // 4 + 1``."""
    return len(text) // 4 + 1


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a JPEG (from its SOF marker) or PNG (IHDR); ``ValueError`` otherwise."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG or PNG image")
    i = 2
    n = len(data)
    while i < n:
        if data[i] != 0xFF:
            raise ValueError("corrupt JPEG: expected marker")
        while i < n and data[i] == 0xFF:
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker in (0x01, *range(0xD0, 0xD9)):
            continue  # standalone markers
        if marker == 0xD9 or i + 2 > n:
            break
        (seg_len,) = struct.unpack(">H", data[i : i + 2])
        if marker in _SOF_MARKERS:
            if i + 7 > n:
                break
            height, width = struct.unpack(">HH", data[i + 3 : i + 7])
            if width == 0 or height == 0:
                raise ValueError("JPEG without explicit dimensions")
            return width, height
        i += seg_len
    raise ValueError("corrupt JPEG: no SOF marker")


# --------------------------------------------------------------------------------------------------
# Scripting


#: code -> (HTTP status, default message)
ERROR_PRESETS: dict[str, tuple[int, str]] = {
    "InvalidParameter": (
        400,
        "Required parameter(s) missing or invalid, please check the request parameters.",
    ),
    "DataInspectionFailed": (400, "Input data may contain inappropriate content."),
    "InvalidApiKey": (401, "Invalid API-key provided."),
    "AccessDenied": (403, "Access denied."),
    "ModelNotFound": (404, "Model not exist."),
    "Throttling.RateQuota": (429, "Requests rate limit exceeded, please try again later."),
    "Throttling": (429, "Requests throttling triggered."),
    "InternalError": (
        500,
        "An internal error has occured, please try again later or contact service support.",
    ),
    "ServiceUnavailable": (503, "Service is temporarily unavailable, please try again later."),
    "ModelUnavailable": (503, "Model is unavailable, please try again later."),
}

#: DashScope code -> OpenAI-compatible (code, type). Lower-case forms per the error-code page; partly a guess.
COMPAT_ERRORS: dict[str, tuple[str, str]] = {
    "InvalidParameter": ("invalid_parameter_error", "invalid_request_error"),
    "DataInspectionFailed": ("data_inspection_failed", "data_inspection_failed"),
    "InvalidApiKey": ("invalid_api_key", "invalid_request_error"),
    "AccessDenied": ("access_denied", "access_denied"),
    "ModelNotFound": ("model_not_found", "invalid_request_error"),
    "Throttling.RateQuota": ("limit_requests", "limit_requests"),
    "Throttling": ("limit_requests", "limit_requests"),
    "InternalError": ("internal_error", "internal_error"),
    "ServiceUnavailable": ("service_unavailable", "service_unavailable"),
    "ModelUnavailable": ("model_unavailable", "model_unavailable"),
}


@dataclass
class Behavior:
    """What the fake does with one model request (generation or compatible).

    Order of effects: wait while held (``hang`` waits for the next ``release()``), sleep ``delay_s``, then
    the first of ``reset`` / ``garbage`` / error (``status`` != 200) / success with the scripted reply.
    """

    status: int = 200
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None  # Retry-After header (seconds) on errors
    delay_s: float = 0.0
    hang: bool = False
    reset: bool = False  # close the socket (RST) without any response
    reset_after: bool = False  # process (and bill) the request, then close the socket without the reply
    garbage: bool = False  # 200 with a non-JSON body
    reply_text: str | None = None
    reply_fn: Callable[[RecordedRequest], str] | None = None
    stream_error_after: int | None = None  # SSE: send N result events, then ``event:error`` (code/message)
    chunk_delay_s: float = 0.0  # SSE: sleep between events
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers

    @classmethod
    def error(
        cls,
        code: str,
        message: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> Behavior:
        """An error with the preset status/message for ``code`` (see ``ERROR_PRESETS``)."""
        preset_status, preset_message = ERROR_PRESETS.get(code, (400, code))
        if retry_after is None and preset_status == 429:
            retry_after = 1
        return cls(
            status=status or preset_status,
            code=code,
            message=message or preset_message,
            retry_after=retry_after,
        )

    @classmethod
    def reply(cls, text: str) -> Behavior:
        """A success whose reply text is ``text`` (e.g. a JSON document for structured prompts)."""
        return cls(reply_text=text)

    @property
    def is_error(self) -> bool:
        return self.status != 200


@dataclass
class VideoItem:
    """One ``video`` content item: its URLs as sent, the resolved frame bytes and its ``fps``."""

    urls: list[str]
    frames: list[bytes]
    fps: float | None
    item: dict[str, Any]


@dataclass
class RecordedRequest:
    """One request the fake received. ``headers`` keys are lower-case."""

    kind: str  # 'getPolicy' | 'ossUpload' | 'generation' | 'compatible' | 'unknown'
    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    api_key: str | None = None
    model: str | None = None
    prompt: str | None = None  # user text items joined with "\n"
    system: str | None = None  # system text joined with "\n"
    videos: list[VideoItem] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    form: dict[str, str] = field(default_factory=dict)  # ossUpload text fields
    upload_key: str | None = None
    upload_bytes: bytes | None = None
    behavior: Behavior | None = None
    response_status: int | None = None  # None until answered (or if the connection was reset)
    received_at: float = field(default_factory=time.monotonic)

    @property
    def frames(self) -> list[list[bytes]]:
        """Resolved frame bytes, one list per video item."""
        return [v.frames for v in self.videos]

    @property
    def fps(self) -> float | None:
        """``fps`` of the first video item (None if absent or no video)."""
        return self.videos[0].fps if self.videos else None


class _HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _invalid(message: str) -> _HttpError:
    return _HttpError(400, "InvalidParameter", message)


def _decode_data_uri(uri: str) -> bytes:
    head, sep, payload = uri.partition(",")
    if not sep:
        raise _invalid("The provided data-uri is malformed.")
    if len(uri) > 10 * 1024 * 1024:
        raise _invalid("Exceeded limit on max bytes per data-uri item : 10485760")
    if head.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _invalid(f"The provided data-uri is not valid base64: {exc}") from None
    return payload.encode()


def _fmt_fps(fps: float | None) -> str:
    return "unset" if fps is None else f"{fps:g}"


# --------------------------------------------------------------------------------------------------
# Server


class FakeDashScope:
    """Loopback DashScope. Use as a context manager or call ``start()``/``stop()``.

    Scripting (model requests only): ``enqueue(*behaviors)`` (consumed FIFO), then ``key_behaviors[key]``,
    then ``default_behavior``. ``hold()``/``release()`` gate model requests; ``wait_for_held(n)`` waits until
    n of them are parked at the gate. ``requests`` returns a snapshot of recorded requests.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        latency_s: float = 0.0,
        accepted_keys: set[str] | None = None,
        key_prefix: str = "sk-",
        frame_limits: dict[str, int] | None = None,
        hang_timeout_s: float = 60.0,
        enforce_model_binding: bool = True,
        verbose: bool = False,
    ) -> None:
        self._requested_port = port
        self.latency_s = latency_s
        self.accepted_keys = accepted_keys
        self.key_prefix = key_prefix
        self.frame_limits: dict[str, int] = dict(frame_limits or {})
        self.hang_timeout_s = hang_timeout_s
        self.enforce_model_binding = enforce_model_binding
        self.verbose = verbose
        self.default_behavior: Behavior | None = None
        self.key_behaviors: dict[str, Behavior] = {}
        self.policy_behavior: Behavior | None = None  # error/delay for getPolicy (status only)
        self.upload_behavior: Behavior | None = None  # error/delay for OSS uploads (status only)
        self.reply_fn: Callable[[RecordedRequest], str] | None = None
        self.remote_files: dict[str, bytes] = {}
        self.usage_field = "both"  # how visual tokens are reported (see the module docstring)
        self.video_max_pixels = "honour"  # or "ignore": frame lists billed at their real size
        self.video_bill_factor = 1  # > 1: bills (and reports) that many times the documented video tokens
        self.billed: list[dict[str, Any]] = []  # one entry per processed model request
        self._outage_until = 0.0
        self.arrived = threading.Event()  # set whenever a model request arrives
        self._cond = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._uploads: dict[str, bytes] = {}
        self._upload_models: dict[str, str] = {}
        self._policies: dict[str, tuple[str, str, datetime]] = {}  # policy b64 -> (upload_dir, model, exp)
        self._queue: deque[Behavior] = deque()
        self._held = False
        self._release_count = 0
        self._waiting = 0
        self._stopping = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle
    def start(self) -> FakeDashScope:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", self._requested_port), self)
        self._server = server
        self._stopping = False
        self._thread = threading.Thread(target=server.serve_forever, name="FakeDashScope", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeDashScope:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeDashScope is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_http_api_url(self) -> str:
        return f"{self.base_url}/api/v1"

    @property
    def compatible_base_url(self) -> str:
        return f"{self.base_url}/compatible-mode/v1"

    @property
    def upload_host(self) -> str:
        return f"{self.base_url}{OSS_BUCKET_PATH}"

    # ---- state
    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot (copy) of all recorded requests, oldest first."""
        with self._cond:
            return list(self._requests)

    @property
    def uploads(self) -> dict[str, bytes]:
        """Snapshot of uploaded objects, OSS key -> bytes."""
        with self._cond:
            return dict(self._uploads)

    def kinds(self) -> list[str]:
        return [r.kind for r in self.requests]

    def requests_of(self, kind: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.kind == kind]

    def text_generations(self) -> list[RecordedRequest]:
        """Calls of ``dashscope.Generation`` (text models: summaries, answers), kind ``generation``."""
        return [r for r in self.requests_of("generation") if r.path.rstrip("/").endswith(TEXT_GENERATION_PATH)]

    def last(self, kind: str | None = None) -> RecordedRequest:
        reqs = self.requests if kind is None else self.requests_of(kind)
        if not reqs:
            raise LookupError(f"no {kind or ''} request recorded")
        return reqs[-1]

    def reset(self) -> None:
        """Forget requests, uploads, policies and all scripting; release held requests."""
        self.release()
        with self._cond:
            self._requests.clear()
            self._uploads.clear()
            self._upload_models.clear()
            self._policies.clear()
            self._queue.clear()
            self.key_behaviors.clear()
            self.default_behavior = None
            self.policy_behavior = None
            self.upload_behavior = None
            self.reply_fn = None
            self.remote_files.clear()
            self.arrived.clear()
            self.billed.clear()
            self.usage_field = "both"
            self.video_max_pixels = "honour"
            self.video_bill_factor = 1
            self._outage_until = 0.0

    # ---- money and outages
    def outage(self, seconds: float) -> None:
        """Answer 503 to every request (policy, upload, model) for ``seconds`` from now."""
        with self._cond:
            self._outage_until = time.monotonic() + seconds

    def end_outage(self) -> None:
        with self._cond:
            self._outage_until = 0.0

    @property
    def in_outage(self) -> bool:
        with self._cond:
            return time.monotonic() < self._outage_until

    def bill(self, entry: dict[str, Any]) -> None:
        with self._cond:
            self.billed.append(entry)

    def billed_totals(self) -> dict[str, int]:
        """Sum of what was billed: input, output, visual (video + image) tokens and model requests billed."""
        with self._cond:
            rows = list(self.billed)
        return {
            "input_tokens": sum(r["input_tokens"] for r in rows),
            "output_tokens": sum(r["output_tokens"] for r in rows),
            "video_tokens": sum(r["video_tokens"] + r["image_tokens"] for r in rows),
            "calls": len(rows),
        }

    # ---- scripting
    def enqueue(self, *behaviors: Behavior) -> None:
        """Behaviours for the next model requests, consumed one per request in order."""
        with self._cond:
            self._queue.extend(behaviors)

    @property
    def pending(self) -> int:
        """Number of queued behaviours not yet consumed."""
        with self._cond:
            return len(self._queue)

    def hold(self) -> None:
        """Park every model request at the gate (after it is recorded) until ``release()``."""
        with self._cond:
            self._held = True

    def release(self) -> None:
        """Open the gate: wake held requests and ``hang`` behaviours."""
        with self._cond:
            self._held = False
            self._release_count += 1
            self._cond.notify_all()

    @property
    def held_count(self) -> int:
        with self._cond:
            return self._waiting

    def wait_for_held(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Wait until at least ``n`` requests are parked at the gate."""
        with self._cond:
            return self._cond.wait_for(lambda: self._waiting >= n, timeout)

    def wait_for_requests(self, n: int, kind: str | None = None, timeout: float = 5.0) -> bool:
        """Wait until at least ``n`` requests (of ``kind``) have been recorded."""
        with self._cond:
            return self._cond.wait_for(
                lambda: sum(1 for r in self._requests if kind is None or r.kind == kind) >= n, timeout
            )

    def accepts_key(self, key: str | None) -> bool:
        if not key:
            return False
        if self.accepted_keys is not None:
            return key in self.accepted_keys
        return key.startswith(self.key_prefix)

    def limit_for(self, model: str) -> int:
        return self.frame_limits.get(model, frame_limit(model))

    # ---- internals used by the handler
    def _record(self, rec: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(rec)
            self._cond.notify_all()
        if rec.kind in ("generation", "compatible"):
            self.arrived.set()

    def _next_behavior(self, api_key: str | None) -> Behavior | None:
        with self._cond:
            if self._queue:
                return self._queue.popleft()
        if api_key is not None and api_key in self.key_behaviors:
            return self.key_behaviors[api_key]
        return self.default_behavior

    def _gate(self, hang: bool) -> None:
        with self._cond:
            start = self._release_count
            if not (self._held or hang) or self._stopping:
                return
            self._waiting += 1
            self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: self._release_count != start or self._stopping, timeout=self.hang_timeout_s)
            finally:
                self._waiting -= 1
                self._cond.notify_all()

    def _issue_policy(self, model: str, api_key: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        exp = now + timedelta(seconds=300)
        user = hashlib.md5(api_key.encode()).hexdigest()
        upload_dir = f"dashscope-instant/{user}/{now:%Y-%m-%d}/{uuid.uuid4()}"
        policy_doc = {
            "expiration": exp.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "conditions": [
                ["content-length-range", 0, 1073741824],
                ["starts-with", "$key", upload_dir],
                {"bucket": "dashscope-file-mgr"},
                {"x-oss-object-acl": "private"},
                {"x-oss-forbid-overwrite": "true"},
            ],
        }
        policy = base64.b64encode(json.dumps(policy_doc, separators=(",", ":")).encode()).decode()
        with self._cond:
            self._policies[policy] = (upload_dir, model, exp)
        return {
            "policy": policy,
            "signature": _sign(policy),
            "upload_dir": upload_dir,
            "upload_host": self.upload_host,
            "expire_in_seconds": 300,
            "max_file_size_mb": 1024,
            "capacity_limit_mb": 999999999,
            "oss_access_key_id": OSS_ACCESS_KEY_ID,
            "x_oss_object_acl": "private",
            "x_oss_forbid_overwrite": "true",
        }

    def _store_upload(self, fields: dict[str, str], data: bytes) -> tuple[int, str, str]:
        """Validate an OSS POST; returns (status, oss code, message); status 200 stores the object."""
        policy = fields.get("policy", "")
        key = fields.get("key", "")
        if fields.get("OSSAccessKeyId") != OSS_ACCESS_KEY_ID:
            return (
                403,
                "InvalidAccessKeyId",
                "The OSS Access Key Id you provided does not exist in our records.",
            )
        if not hmac.compare_digest(fields.get("Signature", ""), _sign(policy)):
            return 403, "SignatureDoesNotMatch", "The request signature we calculated does not match."
        with self._cond:
            issued = self._policies.get(policy)
            if issued is None:
                return 403, "AccessDenied", "Invalid according to Policy: unknown policy."
            upload_dir, model, exp = issued
            if datetime.now(UTC) > exp:
                return 403, "AccessDenied", "Invalid according to Policy: Policy expired."
            if not key.startswith(upload_dir):
                cond = f'["starts-with", "$key", "{upload_dir}"]'
                return 403, "AccessDenied", f"Invalid according to Policy: Policy Condition failed: {cond}"
            if key in self._uploads and fields.get("x-oss-forbid-overwrite", "false").lower() == "true":
                return (
                    409,
                    "FileAlreadyExists",
                    "The object you specified already exists and can not be overwritten.",
                )
            self._uploads[key] = data
            self._upload_models[key] = model
        return 200, "", ""

    def _resolve(self, url: str, model: str, oss_enabled: bool) -> bytes:
        if url.startswith("oss://"):
            if not oss_enabled:
                raise _invalid("The provided URL does not appear to be valid. Ensure it is correctly formatted.")
            key = url[len("oss://") :]
            with self._cond:
                data = self._uploads.get(key)
                bound = self._upload_models.get(key)
            if data is None:
                raise _invalid(f"The provided URL does not appear to be valid (unknown object {key!r}).")
            if self.enforce_model_binding and bound != model:
                raise _invalid(f"The file {url} was uploaded for model {bound!r}, not {model!r}.")
            return data
        if url.startswith("data:"):
            return _decode_data_uri(url)
        if url in self.remote_files:
            return self.remote_files[url]
        raise _invalid(f"The provided URL does not appear to be valid. Ensure it is correctly formatted: {url[:80]}")

    def _default_reply(self, rec: RecordedRequest) -> str:
        parts = [f"video[{i}]: {len(v.frames)} frames @ fps={_fmt_fps(v.fps)}" for i, v in enumerate(rec.videos)]
        parts += [f"image[{i}]" for i in range(len(rec.images))]
        body = "; ".join(parts) or "no media"
        return f"[fake {rec.model}] {body}. Nothing happens in these synthetic frames."

    def _reply_text(self, rec: RecordedRequest, behavior: Behavior | None) -> str:
        if behavior is not None and behavior.reply_text is not None:
            return behavior.reply_text
        if behavior is not None and behavior.reply_fn is not None:
            return behavior.reply_fn(rec)
        if self.reply_fn is not None:
            return self.reply_fn(rec)
        return self._default_reply(rec)


def _text_paths() -> tuple[str, ...]:
    from tests.fakes.dashscope_text import PATHS

    return PATHS


def _sign(policy: str) -> str:
    return base64.b64encode(hmac.new(_OSS_SECRET, policy.encode(), hashlib.sha1).digest()).decode()


def _parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], bytes | None, str | None]:
    """Minimal multipart/form-data parser: (text fields, file bytes, file name)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise ValueError("multipart body without boundary")
    delim = b"\r\n--" + match.group(1).encode()
    fields: dict[str, str] = {}
    file_data: bytes | None = None
    filename: str | None = None
    for chunk in (b"\r\n" + body).split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            continue
        msg = HeaderParser().parsestr(head.decode("utf-8", "replace"))
        name = msg.get_param("name", header="content-disposition")
        fname = msg.get_filename()
        if not isinstance(name, str):
            continue
        if fname is not None or name == "file":
            file_data, filename = data, fname
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields, file_data, filename


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: FakeDashScope) -> None:
        super().__init__(address, _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up early (timeouts, resets) are expected; stay quiet unless verbose."""
        if self.fake.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeDashScope/1.0"

    @property
    def fake(self) -> FakeDashScope:
        server: _Server = self.server  # type: ignore[assignment]
        return server.fake

    def log_message(self, format: str, *args: Any) -> None:
        if self.fake.verbose:
            super().log_message(format, *args)

    # ---- plumbing
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _headers_dict(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def _api_key(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else None

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode(), "application/json", headers)

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()

    def _start_sse(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/event-stream;charset=UTF-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.close_connection = True

    def _write(self, text: str) -> None:
        self.wfile.write(text.encode())
        self.wfile.flush()

    # ---- routing
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path.rstrip("/") == POLICY_PATH:
            self._get_policy(parse_qs(parts.query))
        else:
            self._not_found()

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith(OSS_PREFIX):
            self._oss_upload()
        elif path in (GENERATION_PATH, TEXT_GENERATION_PATH):
            self._model_call("generation")
        elif path == COMPAT_PATH:
            self._model_call("compatible")
        elif path.rstrip("/") in _text_paths():  # embeddings (tests/fakes/dashscope_text.py)
            from tests.fakes.dashscope_text import handle

            handle(self, path.rstrip("/"))
        else:
            self._body()
            self._not_found()

    def _not_found(self) -> None:
        self.fake._record(RecordedRequest("unknown", self.command, self.path, self._headers_dict()))
        self._send_json(404, {"request_id": str(uuid.uuid4()), "code": "NotFound", "message": "Not found."})

    def _side_behavior(self, behavior: Behavior | None) -> bool:
        """Apply delay/error of a getPolicy/upload behaviour; True if a response was sent."""
        if self.fake.in_outage:
            self._send_json(503, {"request_id": str(uuid.uuid4()), "code": "ServiceUnavailable",
                                  "message": ERROR_PRESETS["ServiceUnavailable"][1]})  # fmt: skip
            return True
        if behavior is None:
            return False
        if behavior.hang:
            self.fake._gate(True)
        if behavior.delay_s:
            time.sleep(behavior.delay_s)
        if behavior.reset:
            self._reset()
            return True
        if behavior.is_error:
            self._send_json(
                behavior.status,
                {"request_id": str(uuid.uuid4()), "code": behavior.code, "message": behavior.message},
            )
            return True
        return False

    def _get_policy(self, query: dict[str, list[str]]) -> None:
        fake = self.fake
        key = self._api_key()
        model = (query.get("model") or [""])[0]
        rec = RecordedRequest("getPolicy", "GET", self.path, self._headers_dict(), api_key=key, model=model)
        fake._record(rec)
        rid = str(uuid.uuid4())
        if self._side_behavior(fake.policy_behavior):
            rec.response_status = 503 if not fake.policy_behavior else fake.policy_behavior.status
            return
        if (query.get("action") or [""])[0] != "getPolicy":
            rec.response_status = 400
            self._send_json(400, {"request_id": rid, "code": "InvalidParameter", "message": "Unknown action."})
            return
        if not fake.accepts_key(key):
            rec.response_status = 401
            self._send_json(401, {"request_id": rid, "code": "InvalidApiKey", "message": "Invalid API-key provided."})
            return
        if not model:
            rec.response_status = 400
            self._send_json(400, {"request_id": rid, "code": "InvalidParameter", "message": "model is required."})
            return
        rec.response_status = 200
        self._send_json(200, {"data": fake._issue_policy(model, key or ""), "request_id": rid})

    def _oss_upload(self) -> None:
        fake = self.fake
        body = self._body()
        rec = RecordedRequest("ossUpload", "POST", self.path, self._headers_dict())
        rid = uuid.uuid4().hex.upper()
        try:
            fields, data, _ = _parse_multipart(body, self.headers.get("Content-Type", ""))
        except ValueError as exc:
            fields, data = {}, None
            rec.form = {"error": str(exc)}
        rec.form = {**rec.form, **fields}
        rec.upload_key = fields.get("key")
        rec.upload_bytes = data
        fake._record(rec)
        if self._side_behavior(fake.upload_behavior):
            rec.response_status = 503 if not fake.upload_behavior else fake.upload_behavior.status
            return
        if data is None:
            status, code, message = 400, "InvalidArgument", "No file part in the multipart body."
        else:
            status, code, message = fake._store_upload(fields, data)
        rec.response_status = status
        if status == 200:
            self._send(200, b"", "application/xml", {"x-oss-request-id": rid})
            return
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
            f"  <Code>{code}</Code>\n  <Message>{message}</Message>\n  <RequestId>{rid}</RequestId>\n"
            "  <HostId>dashscope-file-mgr.127.0.0.1</HostId>\n</Error>\n"
        )
        self._send(status, xml.encode(), "application/xml", {"x-oss-request-id": rid})

    # ---- model calls
    def _parse_model_request(self, kind: str, body: Any, rec: RecordedRequest) -> list[Any]:
        """Fill ``rec`` from the body; returns the list of content items of every message."""
        if not isinstance(body, dict):
            raise _invalid("Request body must be a JSON object.")
        rec.model = body.get("model")
        if kind == "generation":
            messages = (body.get("input") or {}).get("messages")
            rec.parameters = dict(body.get("parameters") or {})
            rec.stream = self.headers.get(
                "X-DashScope-SSE", ""
            ).lower() == "enable" or "text/event-stream" in self.headers.get("Accept", "")
        else:
            messages = body.get("messages")
            rec.parameters = {k: v for k, v in body.items() if k not in ("model", "messages")}
            rec.stream = bool(body.get("stream"))
        if not rec.model:
            raise _HttpError(400, "BadRequest.EmptyModel", 'Required parameter "model" missing from request.')
        if not isinstance(messages, list) or not messages:
            raise _HttpError(400, "BadRequest.EmptyInput", "Required input parameter missing from request.")
        user_texts: list[str] = []
        system_texts: list[str] = []
        for msg in messages:
            if not isinstance(msg, dict):
                raise _invalid("Each message must be an object.")
            texts = system_texts if msg.get("role") == "system" else user_texts
            content = msg.get("content")
            if isinstance(content, str):
                texts.append(content)
                continue
            for item in content or []:
                text = item.get("text") if isinstance(item, dict) else None
                if isinstance(text, str) and (kind == "compatible" or not text.startswith("oss://")):
                    texts.append(text)
        rec.prompt = "\n".join(user_texts)
        rec.system = "\n".join(system_texts)
        return messages

    def _collect_media(self, kind: str, messages: list[Any], rec: RecordedRequest) -> dict[str, int]:
        """Resolve media into ``rec.videos``/``rec.images`` and return the token usage counts."""
        fake = self.fake
        model = rec.model or ""
        oss_enabled = self.headers.get("X-DashScope-OssResourceResolve", "").lower() == "enable"
        high_res = bool(rec.parameters.get("vl_high_resolution_images"))
        v_tokens = i_tokens = 0
        for msg in messages:
            content = msg.get("content")
            if not isinstance(content, list):
                continue
            for item in content:
                if not isinstance(item, dict):
                    continue
                video = item.get("video")
                image: Any = item.get("image")
                if kind == "compatible":
                    itype = item.get("type")
                    if itype == "video_url":
                        raise _invalid("The fake only supports frame-list videos ({'type': 'video', ...}).")
                    if itype == "image_url":
                        image = (item.get("image_url") or {}).get("url")
                if video is not None:
                    if not isinstance(video, list):
                        raise _invalid("The fake only supports frame-list videos (a list of image URLs).")
                    frames = [fake._resolve(str(u), model, oss_enabled) for u in video]
                    fps = item.get("fps")
                    rec.videos.append(VideoItem(urls=[str(u) for u in video], frames=frames, fps=fps, item=item))
                    v_tokens += self._video_item_tokens(frames, model, item)
                elif image is not None:
                    data = fake._resolve(str(image), model, oss_enabled)
                    rec.images.append(data)
                    w, h = self._size(data)
                    i_tokens += image_tokens(w, h, model, item.get("max_pixels"), high_res)
        return {"video": v_tokens, "image": i_tokens}

    def _size(self, data: bytes) -> tuple[int, int]:
        try:
            w, h = image_size(data)
        except ValueError as exc:
            raise _invalid(f"The image/frame could not be decoded: {exc}.") from None
        if w <= 10 or h <= 10:
            raise _invalid(f"The image length and width must be greater than 10 pixels, got {w}x{h}.")
        if max(w, h) / min(w, h) > 200:
            raise _invalid("The aspect ratio of the image must not exceed 200:1.")
        return w, h

    def _video_item_tokens(self, frames: list[bytes], model: str, item: dict[str, Any]) -> int:
        limit = self.fake.limit_for(model)
        if not 4 <= len(frames) <= limit:
            raise _invalid(
                "The video modality input does not meet the requirements because: "
                f"the range of sequence images shoule be (4, {limit})."
            )
        sizes = [self._size(f) for f in frames]
        w, h = sizes[0]
        max_pixels = None if self.fake.video_max_pixels == "ignore" else item.get("max_pixels")
        return video_tokens(len(frames), w, h, model, max_pixels) * self.fake.video_bill_factor

    def _model_call(self, kind: str) -> None:
        fake = self.fake
        raw = self._body()
        rec = RecordedRequest(kind, "POST", self.path, self._headers_dict(), api_key=self._api_key())
        failure: _HttpError | None = None
        tokens = {"video": 0, "image": 0}
        try:
            rec.json = json.loads(raw or b"null")
        except ValueError:
            failure = _invalid("Request body is not valid JSON.")
        if failure is None:
            try:
                messages = self._parse_model_request(kind, rec.json, rec)
                if fake.accepts_key(rec.api_key):
                    tokens = self._collect_media(kind, messages, rec)
            except _HttpError as exc:
                failure = exc
        behavior = fake._next_behavior(rec.api_key)
        rec.behavior = behavior
        fake._record(rec)

        fake._gate(hang=bool(behavior and behavior.hang))
        delay = fake.latency_s + (behavior.delay_s if behavior else 0.0)
        if delay > 0:
            time.sleep(delay)
        if behavior is not None and behavior.reset:
            self._reset()
            return
        if behavior is not None and behavior.garbage:
            rec.response_status = 200
            self._send(
                200,
                b"<html><body>502 Bad Gateway (garbage from FakeDashScope)</body></html>",
                "application/json" if not rec.stream else "text/event-stream;charset=UTF-8",
                {"Connection": "close"} if rec.stream else None,
            )
            if rec.stream:
                self.close_connection = True
            return
        err: _HttpError | None = None
        if fake.in_outage:
            err = _HttpError(503, "ServiceUnavailable", ERROR_PRESETS["ServiceUnavailable"][1])
        elif behavior is not None and behavior.is_error:
            err = _HttpError(behavior.status, behavior.code or "Unknown", behavior.message or "")
        elif not fake.accepts_key(rec.api_key):
            err = _HttpError(401, "InvalidApiKey", "Invalid API-key provided.")
        elif failure is not None:
            err = failure
        if err is not None:
            rec.response_status = err.status
            self._send_error(kind, rec, err, behavior)
            return

        text = fake._reply_text(rec, behavior)
        usage_in = {
            "text": text_tokens("\n".join(t for t in (rec.system, rec.prompt) if t)),
            **tokens,
        }
        usage = self._ds_usage(usage_in, text)
        fake.bill({"model": rec.model, "input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"],
                   "video_tokens": usage_in["video"], "image_tokens": usage_in["image"]})  # fmt: skip
        if behavior is not None and behavior.reset_after:  # processed and billed; the reply is lost
            self._reset()
            return
        rec.response_status = 200
        extra = dict(behavior.headers) if behavior else {}
        if kind == "generation":
            self._generation_reply(rec, text, usage_in, behavior, extra)
        else:
            self._compat_reply(rec, text, usage_in, behavior, extra)

    def _send_error(self, kind: str, rec: RecordedRequest, err: _HttpError, behavior: Behavior | None) -> None:
        rid = str(uuid.uuid4())
        headers = dict(behavior.headers) if behavior else {}
        if behavior is not None and behavior.retry_after is not None:
            headers["Retry-After"] = f"{behavior.retry_after:g}"
        if kind == "compatible":
            code, etype = COMPAT_ERRORS.get(err.code, (err.code, err.code))
            body = {
                "error": {"message": err.message, "type": etype, "param": None, "code": code},
                "request_id": rid,
            }
            self._send_json(err.status, body, headers)
            return
        body = {"request_id": rid, "code": err.code, "message": err.message}
        if rec.stream:
            payload = (
                f"id:1\nevent:error\n:HTTP_STATUS/{err.status}\n"
                f"data:{json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"
            ).encode()
            self._send(err.status, payload, "text/event-stream;charset=UTF-8", headers)
            return
        self._send_json(err.status, body, headers)

    @staticmethod
    def _pieces(text: str) -> list[str]:
        words = re.findall(r"\S+\s*|\s+", text)
        return [w for w in words if w] or [""]

    def _ds_usage(self, usage_in: dict[str, int], out_text: str) -> dict[str, Any]:
        out = text_tokens(out_text)
        inp = usage_in["text"] + usage_in["video"] + usage_in["image"]
        details = {"text_tokens": usage_in["text"]}
        usage: dict[str, Any] = {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}
        mode = self.fake.usage_field
        top, inner = mode in ("both", "video_tokens", "image_tokens"), mode in ("both", "details")
        visual = usage_in["video"] + (usage_in["image"] if mode != "image_tokens" else 0)
        if mode == "image_tokens" and (usage_in["video"] or usage_in["image"]):
            usage["image_tokens"] = usage_in["video"] + usage_in["image"]  # visual tokens under the image name
        elif usage_in["video"] and visual:
            if top:
                usage["video_tokens"] = usage_in["video"]
            if inner:
                details["video_tokens"] = usage_in["video"]
        if usage_in["image"] and mode != "image_tokens":
            if top:
                usage["image_tokens"] = usage_in["image"]
            if inner:
                details["image_tokens"] = usage_in["image"]
        usage["input_tokens_details"] = details
        usage["output_tokens_details"] = {"text_tokens": out}
        usage["prompt_tokens_details"] = {"cached_tokens": 0}
        return usage

    def _generation_reply(
        self,
        rec: RecordedRequest,
        text: str,
        usage_in: dict[str, int],
        behavior: Behavior | None,
        extra: dict[str, str],
    ) -> None:
        rid = str(uuid.uuid4())
        extra = {"X-Request-ID": rid, **extra}
        if not rec.stream:
            body = {
                "output": {
                    "choices": [
                        {
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": [{"text": text}]},
                        }
                    ]
                },
                "usage": self._ds_usage(usage_in, text),
                "request_id": rid,
            }
            self._send_json(200, body, extra)
            return
        incremental = bool(rec.parameters.get("incremental_output"))
        pieces = self._pieces(text)
        self._start_sse(200, extra)
        so_far = ""
        error_after = behavior.stream_error_after if behavior else None
        for i, piece in enumerate(pieces, start=1):
            if error_after is not None and i > error_after:
                err = {
                    "code": behavior.code if behavior and behavior.code else "InternalError",
                    "message": behavior.message if behavior and behavior.message else "stream interrupted",
                    "request_id": rid,
                }
                self._write(f"id:{i}\nevent:error\n:HTTP_STATUS/500\ndata:{json.dumps(err)}\n\n")
                return
            so_far += piece
            last = i == len(pieces)
            event = {
                "output": {
                    "choices": [
                        {
                            "message": {
                                "content": [{"text": piece if incremental else so_far}],
                                "role": "assistant",
                            },
                            "finish_reason": "stop" if last else "null",
                        }
                    ]
                },
                "usage": self._ds_usage(usage_in, so_far),
                "request_id": rid,
            }
            data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
            self._write(f"id:{i}\nevent:result\n:HTTP_STATUS/200\ndata:{data}\n\n")
            if behavior and behavior.chunk_delay_s and not last:
                time.sleep(behavior.chunk_delay_s)

    def _compat_reply(
        self,
        rec: RecordedRequest,
        text: str,
        usage_in: dict[str, int],
        behavior: Behavior | None,
        extra: dict[str, str],
    ) -> None:
        cid = f"chatcmpl-{uuid.uuid4()}"
        created = int(time.time())
        out = text_tokens(text)
        prompt = usage_in["text"] + usage_in["video"] + usage_in["image"]
        details: dict[str, int] = {"cached_tokens": 0, "text_tokens": usage_in["text"]}
        if usage_in["video"]:
            details["video_tokens"] = usage_in["video"]
        if usage_in["image"]:
            details["image_tokens"] = usage_in["image"]
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": out,
            "total_tokens": prompt + out,
            "prompt_tokens_details": details,
            "completion_tokens_details": {"text_tokens": out},
        }
        if not rec.stream:
            body = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": rec.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": usage,
                "system_fingerprint": None,
            }
            self._send_json(200, body, extra)
            return
        include_usage = bool((rec.parameters.get("stream_options") or {}).get("include_usage"))
        self._start_sse(200, extra)
        pieces = self._pieces(text)
        for i, chunk in enumerate(self._compat_chunks(pieces, cid, created, rec.model or "")):
            self._write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n")
            if behavior and behavior.chunk_delay_s and i < len(pieces) - 1:
                time.sleep(behavior.chunk_delay_s)
        if include_usage:
            tail = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": rec.model,
                "choices": [],
                "usage": usage,
            }
            self._write(f"data: {json.dumps(tail)}\n\n")
        self._write("data: [DONE]\n\n")

    @staticmethod
    def _compat_chunks(pieces: list[str], cid: str, created: int, model: str) -> Iterator[dict[str, Any]]:
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            delta: dict[str, Any] = {"content": piece}
            if i == 0:
                delta["role"] = "assistant"
            yield {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": "stop" if last else None, "logprobs": None}],
            }


def main(argv: list[str] | None = None) -> None:
    """Run the fake in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Loopback fake of the DashScope HTTP API.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every model request")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    fake = FakeDashScope(args.port, latency_s=args.latency, verbose=args.verbose).start()
    print(f"FakeDashScope base_http_api_url={fake.base_http_api_url}", flush=True)
    print(f"FakeDashScope compatible_base_url={fake.compatible_base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
