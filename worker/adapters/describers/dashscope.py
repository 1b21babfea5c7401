"""The production describer: Qwen-VL through DashScope, with the real, unmodified ``dashscope`` SDK.

Local frames go through the SDK's own ``file://`` upload (getPolicy -> OSS POST -> ``oss://``), the
``fps`` sent is the rate the frames were really sampled at, and errors the SDK *returns* are
classified (``transport.classify``) and retried with bounded backoff (``retry.py``). The API key is
passed per call and never logged, stored or echoed. ``transport: openai`` swaps the wire for the
OpenAI-compatible mode (``openai_compat.py``) with the same results and usage accounting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, Protocol

import dashscope
import requests
from dashscope.common.error import AuthenticationError, DashScopeException, TimeoutException, UploadFileException

from worker.adapters.describers.retry import RetryPolicy, call_gate, with_retries
from worker.adapters.describers.structured import StructuredOutputError, parse_structured
from worker.adapters.describers.transport import (
    AUTH_HINT,
    CallParams,
    OnText,
    Reply,
    Transport,
    classify,
    header,
    parse_retry_after,
)
from worker.config import Settings
from worker.core.models import Description, Usage
from worker.core.ports import DescribeRequest
from worker.core.presets import apply_times, preset_for, readable_text, repair_prompt
from worker.core.timestamps import SegmentClock
from worker.errors import (
    ConfigError,
    DescriberAuthError,
    DescriberError,
    DescriberRejected,
    DescriberTransient,
)

log = logging.getLogger(__name__)
Listener = Callable[[str, dict[str, Any]], None]
REPAIR_SYSTEM = "You fix malformed JSON. Reply with one valid JSON object and nothing else."


class CallLimiter(Protocol):
    """A cross-process call limit (``worker.ratelimit``): a slot per call, a shared pause after a 429."""

    def acquire(self, timeout_s: float | None = None) -> AbstractContextManager[Any]: ...

    def penalise(self, seconds: float) -> None: ...


class NativeTransport:
    """``dashscope.MultiModalConversation.call`` with ``file://`` frames (uploaded by the SDK)."""

    name = "native"

    def __init__(self, api_key: str, base_url: str | None = None) -> None:
        self._api_key = api_key
        if base_url:  # the SDK reads this module attribute at call time, for uploads and generation
            dashscope.base_http_api_url = base_url.rstrip("/")

    def __repr__(self) -> str:
        return "NativeTransport()"

    def video(
        self, system: str, prompt: str, frames: Sequence[str], fps: float, params: CallParams, on_text: OnText | None
    ) -> Reply:
        item: dict[str, Any] = {"video": [f"file://{p}" for p in frames], "fps": fps}
        if params.max_pixels:
            item["max_pixels"] = params.max_pixels
        user = {"role": "user", "content": [item, {"text": prompt}]}
        return self._call([{"role": "system", "content": [{"text": system}]}, user], params, on_text)

    def text(self, system: str, prompt: str, params: CallParams) -> Reply:
        messages = [{"role": "system", "content": [{"text": system}]}, {"role": "user", "content": [{"text": prompt}]}]
        return self._call(messages, replace(params, stream=False), None)

    def _call(self, messages: list[dict[str, Any]], params: CallParams, on_text: OnText | None) -> Reply:
        kwargs: dict[str, Any] = {
            "model": params.model,
            "messages": messages,
            "api_key": self._api_key,
            "result_format": "message",
            "vl_high_resolution_images": params.vl_high_resolution_images,
            "request_timeout": params.timeout_s,
        }
        for name in ("temperature", "top_p", "seed", "max_tokens"):
            if getattr(params, name) is not None:
                kwargs[name] = getattr(params, name)
        if params.stream:
            kwargs.update(stream=True, incremental_output=True)
        try:
            rsp: Any = dashscope.MultiModalConversation.call(**kwargs)
            return _collect(rsp, on_text) if params.stream else _reply(rsp)
        except requests.exceptions.JSONDecodeError:
            raise DescriberTransient("DashScope sent a response that is not JSON") from None
        except (requests.RequestException, TimeoutException) as exc:
            raise DescriberTransient(f"DashScope unreachable: {type(exc).__name__}: {exc}") from None
        except AuthenticationError:
            raise DescriberAuthError(f"DashScope has no API key for this call — {AUTH_HINT}") from None
        except UploadFileException as exc:
            raise _upload_error(str(exc)) from None
        except DashScopeException as exc:
            raise DescriberRejected(f"DashScope SDK refused the request: {type(exc).__name__}: {exc}") from None
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
            raise DescriberTransient(f"DashScope sent a malformed response ({type(exc).__name__})") from None


def _upload_error(message: str) -> DescriberError:
    """``UploadFileException`` (raised, not returned): a refused key is fatal, the rest is transient."""
    if any(code in message for code in ("InvalidApiKey", "AccessDenied", "code: 401", "code: 403")):
        return DescriberAuthError(f"DashScope refused the frame upload: {message} — {AUTH_HINT}")
    return DescriberTransient(f"uploading frames to DashScope failed: {message}")


def _error_of(rsp: Any) -> DescriberError:
    retry_after = parse_retry_after(header(getattr(rsp, "headers", None), "Retry-After"))
    return classify(int(rsp.status_code), rsp.code, str(rsp.message or ""), rsp.request_id, retry_after)


def _text_of(output: Any) -> tuple[str, str | None]:
    choice = output["choices"][0]
    content = choice["message"]["content"]
    text = content if isinstance(content, str) else "".join(str(c.get("text", "")) for c in content)
    return text, choice.get("finish_reason")


def _usage_of(usage: Any) -> tuple[int, int, int]:
    u = dict(usage or {})
    video = u.get("video_tokens") or (u.get("input_tokens_details") or {}).get("video_tokens") or 0
    return int(u.get("input_tokens") or 0), int(u.get("output_tokens") or 0), int(video)


def _reply(rsp: Any) -> Reply:
    if int(rsp.status_code) != 200:
        raise _error_of(rsp)
    if rsp.output is None:
        raise DescriberTransient("DashScope answered 200 without an output")
    text, _ = _text_of(rsp.output)
    return Reply(text, *_usage_of(rsp.usage), request_id=rsp.request_id or None)


def _collect(events: Iterable[Any], on_text: OnText | None) -> Reply:
    """Stream with ``incremental_output``: each event carries the new piece; usage repeats in each."""
    text = ""
    last: Any = None
    finished = False
    for rsp in events:
        if int(rsp.status_code) != 200:
            raise _error_of(rsp)
        piece, finish = _text_of(rsp.output)
        text += piece
        last = rsp
        if piece and on_text is not None:
            on_text(piece, text)
        finished = finished or (finish not in (None, "", "null"))
    if last is None or not finished:
        raise DescriberTransient("DashScope's stream ended before the reply was complete")
    return Reply(text, *_usage_of(last.usage), request_id=last.request_id or None)


@dataclass
class DashScopeDescriber:
    """Describes a segment with one model call (plus at most one JSON repair call)."""

    transport: Transport
    params: CallParams
    summary_params: CallParams
    policy: RetryPolicy
    concurrency: int = 4
    listener: Listener | None = None
    limiter: CallLimiter | None = None
    name: str = "dashscope"

    def use_rate_limiter(self, limiter: CallLimiter) -> None:
        """Also take a slot from ``limiter`` for every request (Celery workers share one in Redis)."""
        self.limiter = limiter

    def describe(self, request: DescribeRequest) -> Description:
        started = time.monotonic()
        what = f"job {request.job_id} segment {request.plan.index}"
        on_text = self._on_text(request) if self.params.stream else None
        paths = [f.path for f in request.frames]
        reply, attempts = with_retries(
            lambda _n: self._limited(
                lambda: self.transport.video(
                    request.system_prompt, request.prompt, paths, request.fps, self.params, on_text
                )
            ),
            self.policy,
            what=what,
            gate=call_gate(self.concurrency),
        )
        usage = [(reply, attempts)]
        text, structured, flags = reply.text, dict[str, Any](), tuple[str, ...]()
        preset = preset_for(request.preset)
        if preset.json_output:
            text, structured, flags = self._structured(request, reply.text, usage, what)
        log.info("%s: described by %s (%d attempt(s))", what, self.params.model, sum(a for _, a in usage))
        return Description(
            text=text,
            structured=structured,
            describer=self.name,
            model=self.params.model,
            usage=Usage(
                input_tokens=sum(r.input_tokens for r, _ in usage),
                output_tokens=sum(r.output_tokens for r, _ in usage),
                video_tokens=sum(r.video_tokens for r, _ in usage),
                request_id=reply.request_id,
                latency_ms=max(1, round((time.monotonic() - started) * 1000)),
                attempts=sum(a for _, a in usage),
            ),
            flags=flags,
        )

    def _structured(
        self, request: DescribeRequest, raw: str, usage: list[tuple[Reply, int]], what: str
    ) -> tuple[str, dict[str, Any], tuple[str, ...]]:
        """Validate the JSON; one repair call if it is malformed; then convert its times."""
        preset = preset_for(request.preset)
        flags: list[str] = []
        try:
            data = parse_structured(preset, raw)
        except StructuredOutputError as first:
            log.warning("%s: reply is not valid %s JSON (%s); asking once for a repair", what, preset.name, first)
            try:
                fixed, attempts = self.complete(REPAIR_SYSTEM, repair_prompt(preset, raw, str(first)), what=what)
            except DescriberAuthError:
                raise
            except DescriberError as exc:
                log.warning("%s: JSON repair call failed: %s", what, exc.message)
                return raw, {"json_error": str(first)}, ("invalid_json",)
            usage.append((fixed, attempts))
            try:
                data = parse_structured(preset, fixed.text)
            except StructuredOutputError as second:
                log.warning("%s: repaired reply is still invalid (%s); keeping the raw text", what, second)
                return raw, {"json_error": str(second)}, ("invalid_json",)
            flags.append("json_repaired")
        clock = SegmentClock(
            request.plan.start_ms, request.plan.end_ms, tuple(f.t_ms for f in request.frames), request.fps
        )
        data, time_flags = apply_times(preset, data, clock)
        return readable_text(preset, data), data, tuple(sorted({*flags, *time_flags}))

    def complete(self, system: str, prompt: str, *, what: str = "summary") -> tuple[Reply, int]:
        """A text-only call (job summaries, JSON repair) with the same retries and call gate."""
        return with_retries(
            lambda _n: self._limited(lambda: self.transport.text(system, prompt, self.summary_params)),
            self.policy,
            what=what,
            gate=call_gate(self.concurrency),
        )

    def _limited(self, call: Callable[[], Reply]) -> Reply:
        if self.limiter is None:
            return call()
        with self.limiter.acquire(self.params.timeout_s):
            try:
                return call()
            except DescriberTransient as exc:
                if exc.retry_after_s is not None or " 429 " in exc.message:  # throttled: every worker pauses
                    self.limiter.penalise(exc.retry_after_s or self.policy.base_s)
                raise

    @property
    def summary_model(self) -> str:
        return self.summary_params.model

    def _on_text(self, request: DescribeRequest) -> OnText:
        def emit(delta: str, so_far: str) -> None:
            if self.listener is not None:
                data = {"job_id": request.job_id, "index": request.plan.index, "delta": delta, "text": so_far}
                self.listener("segment_text", data)

        return emit


def compatible_url(settings: Settings) -> str:
    """The OpenAI-compatible base: configured, else derived from the native base URL, else Beijing's."""
    ds = settings.dashscope
    if ds.compatible_base_url:
        return ds.compatible_base_url.rstrip("/")
    base = (ds.base_url or dashscope.base_http_api_url or "").rstrip("/")
    if base.endswith("/api/v1"):
        return base[: -len("/api/v1")] + "/compatible-mode/v1"
    return "https://dashscope.aliyuncs.com/compatible-mode/v1"


def build(settings: Settings) -> DashScopeDescriber:
    """The describer from Settings; a missing key is a ConfigError that says where to set it."""
    key = settings.dashscope_api_key
    if not key:
        raise ConfigError("the dashscope describer needs an API key: set DASHSCOPE_API_KEY (or dashscope.api_key)")
    ds = settings.dashscope
    transport: Transport
    if ds.transport == "openai":
        from worker.adapters.describers.openai_compat import OpenAITransport

        transport = OpenAITransport(key, compatible_url(settings))
    else:
        transport = NativeTransport(key, ds.base_url)
    params = CallParams(
        model=ds.model,
        temperature=ds.temperature,
        top_p=ds.top_p,
        seed=ds.seed,
        max_tokens=ds.max_tokens,
        vl_high_resolution_images=ds.vl_high_resolution_images,
        max_pixels=ds.max_pixels,
        stream=ds.stream,
        timeout_s=ds.timeout_s,
    )
    summary = replace(params, model=ds.summary_model or ds.model, stream=False, max_pixels=None)
    return DashScopeDescriber(transport, params, summary, RetryPolicy.of(ds), settings.describer.concurrency)
