"""The production describer: Qwen-VL through DashScope, with the real, unmodified ``dashscope`` SDK.

Frames are uploaded (getPolicy -> OSS POST -> ``oss://``, re-used across retries: ``uploads.py``), the
``fps`` sent is the rate the frames were really sampled at, and errors the SDK *returns* are
classified (``transport.classify``) and retried with bounded backoff (``retry.py``). Money is data:
every attempt runs under one deadline and is counted (``wire.py``), a reply lost after sending is
recorded at its estimate, a reply without a visual token count falls back to the estimate (flagged),
and a circuit breaker (``breaker.py``) stops calling during an outage. ``transport: openai`` swaps the
wire for the OpenAI-compatible mode (``openai_compat.py``) with the same accounting.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import dashscope

from worker.adapters.describers import wire
from worker.adapters.describers.breaker import Breaker
from worker.adapters.describers.native import NativeTransport
from worker.adapters.describers.retry import RetryPolicy, call_gate, with_retries
from worker.adapters.describers.structured import StructuredOutputError, parse_structured
from worker.adapters.describers.transport import CallParams, OnText, Reply, Transport
from worker.config import Settings
from worker.core import budget
from worker.core.models import Description, Usage
from worker.core.ports import DescribeRequest
from worker.core.presets import apply_times, preset_for, readable_text, repair_prompt
from worker.core.timestamps import SegmentClock
from worker.errors import BudgetExceeded, ConfigError, DescriberAuthError, DescriberError, DescriberTransient

log = logging.getLogger(__name__)
Listener = Callable[[str, dict[str, Any]], None]
REPAIR_SYSTEM = "You fix malformed JSON. Reply with one valid JSON object and nothing else."


class CallLimiter(Protocol):
    """A cross-process call limit (``worker.ratelimit``): a slot per call, a shared pause after a 429."""

    def acquire(self, timeout_s: float | None = None) -> AbstractContextManager[Any]: ...

    def penalise(self, seconds: float) -> None: ...


@dataclass
class Spend:
    """What the attempts of one call cost, successful or not: model requests sent, and the estimated
    tokens of replies lost after sending (the server may have processed and billed them)."""

    http: int = 0
    lost_input: int = 0
    lost_video: int = 0

    def note(self, att: wire.Attempt, est_video: int, est_text: int) -> None:
        self.http += att.generation
        if att.lost:
            self.lost_video += est_video
            self.lost_input += est_video + est_text

    def usage(self) -> Usage:
        return Usage(self.lost_input, 0, self.lost_video, attempts=0, http_attempts=self.http)


def _throttled(exc: DescriberTransient) -> bool:
    return exc.retry_after_s is not None or " 429 " in exc.message


@functools.cache
def shared_breaker(failures: int, cooldown_s: float, scope: str = "") -> Breaker:
    """One breaker per process and ``scope`` (every job and thread of it); Celery workers also share it via
    Redis."""
    return Breaker(failures, cooldown_s, scope)


def breaker_scope(api_key: str, endpoint: str) -> str:
    """What an outage is shared by: the account and the endpoint (a region), hashed (no key in Redis)."""
    return hashlib.sha256(f"{api_key}\n{endpoint}".encode()).hexdigest()[:12]


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
    breaker: Breaker = field(default_factory=Breaker)

    def use_rate_limiter(self, limiter: CallLimiter) -> None:
        """Also take a slot from ``limiter`` for every request (Celery workers share one in Redis), and
        share the circuit breaker through the same Redis."""
        self.limiter = limiter
        client = getattr(limiter, "client", None)
        if client is not None:
            self.breaker.use_redis(client)

    def estimate_video(self, request: DescribeRequest) -> int:
        """The video tokens the frames as written cost (the formula the service bills by)."""
        if not request.frames:
            return 0
        limits = budget.limits_for(self.params.model)
        if self.params.max_pixels and self.params.max_pixels < limits.video_max_pixels:
            limits = replace(limits, video_max_pixels=self.params.max_pixels)
        first = request.frames[0]
        return budget.video_tokens(len(request.frames), first.width, first.height, limits)

    def describe(self, request: DescribeRequest) -> Description:
        started = time.monotonic()
        what = f"job {request.job_id} segment {request.plan.index}"
        on_text = self._on_text(request) if self.params.stream else None
        paths = [f.path for f in request.frames]
        est_video = self.estimate_video(request)
        est_text = budget.text_tokens(f"{request.system_prompt}\n{request.prompt}")
        spend = Spend()

        def attempt(_n: int) -> Reply:
            if request.guard is not None:  # every request (a retry too) is one the job's caps must allow
                request.guard(est_video)
            call = lambda: self.transport.video(  # noqa: E731
                request.system_prompt, request.prompt, paths, request.fps, self.params, on_text
            )
            return self._attempt(request.job_id, call, spend, est_video, est_text)

        try:
            reply, attempts = with_retries(attempt, self.policy, what=what, gate=call_gate(self.concurrency))
        except (DescriberError, BudgetExceeded) as exc:
            setattr(exc, "spent", spend.usage())  # noqa: B010 - recorded on the failed row
            raise
        flags: set[str] = set()
        if not reply.visual_reported:
            log.warning("%s: the reply named no visual token count; recording the estimate (%d)", what, est_video)
            reply = replace(reply, video_tokens=est_video)
            flags.add("video_tokens_estimated")
        if spend.lost_input:
            flags.add("usage_estimated")
        usage = [(replace(reply, http_attempts=spend.http), attempts)]
        text, structured, more = reply.text, dict[str, Any](), tuple[str, ...]()
        preset = preset_for(request.preset)
        if preset.json_output:
            text, structured, more = self._structured(request, reply.text, usage, what)
        log.info("%s: described by %s (%d attempt(s), %d request(s))", what, self.params.model,
                 sum(a for _, a in usage), sum(r.http_attempts for r, _ in usage))  # fmt: skip
        return Description(
            text=text,
            structured=structured,
            describer=self.name,
            model=self.params.model,
            usage=Usage(
                input_tokens=sum(r.input_tokens for r, _ in usage) + spend.lost_input,
                output_tokens=sum(r.output_tokens for r, _ in usage),
                video_tokens=sum(r.video_tokens for r, _ in usage) + spend.lost_video,
                request_id=reply.request_id,
                latency_ms=max(1, round((time.monotonic() - started) * 1000)),
                attempts=sum(a for _, a in usage),
                http_attempts=sum(r.http_attempts for r, _ in usage),
            ),
            flags=tuple(sorted({*flags, *more})),
        )

    def _attempt(self, job_id: str, call: Callable[[], Reply], spend: Spend, est_video: int, est_text: int) -> Reply:
        """One attempt: refused at once while the circuit is open; else one deadline over policy,
        uploads and generation, every request counted, the outcome told to the breaker."""
        self.breaker.check(job_id)

        def run() -> Reply:
            with wire.attempt(self.params.timeout_s) as att:
                try:
                    reply = call()
                except DescriberTransient as exc:
                    spend.note(att, est_video, est_text)
                    if not _throttled(exc):
                        self.breaker.failure(exc.message)
                    raise
                except DescriberError:
                    spend.note(att, est_video, est_text)
                    raise
                spend.note(att, 0, 0)
                self.breaker.success()
                return reply

        return self._limited(run)

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
                fixed, attempts = self.complete(
                    REPAIR_SYSTEM, repair_prompt(preset, raw, str(first)), what=what, job_id=request.job_id,
                    guard=request.guard,
                )  # fmt: skip
            except DescriberAuthError:
                raise
            except (DescriberError, BudgetExceeded) as exc:
                log.warning("%s: JSON repair call failed: %s", what, exc.message)
                spent: Usage | None = getattr(exc, "spent", None)
                if spent is not None:  # the failed repair's requests are money too
                    usage.append((Reply("", spent.input_tokens, 0, 0, http_attempts=spent.http_attempts), 0))
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

    def complete(
        self,
        system: str,
        prompt: str,
        *,
        what: str = "summary",
        job_id: str = "JOB",
        guard: Callable[[int], None] | None = None,
    ) -> tuple[Reply, int]:
        """A text-only call (job summaries, JSON repair) with the same retries, gate and accounting.
        The reply's tokens include estimates of replies lost after sending; ``http_attempts`` is set.
        ``guard`` is asked before every request (BudgetExceeded: not sent). A failure carries what it
        cost as ``exc.spent``."""
        spend = Spend()
        est_text = budget.text_tokens(f"{system}\n{prompt}")

        def attempt(_n: int) -> Reply:
            if guard is not None:
                guard(0)
            call = lambda: self.transport.text(system, prompt, self.summary_params)  # noqa: E731
            return self._attempt(job_id, call, spend, 0, est_text)

        try:
            reply, attempts = with_retries(attempt, self.policy, what=what, gate=call_gate(self.concurrency))
        except (DescriberError, BudgetExceeded) as exc:
            setattr(exc, "spent", spend.usage())  # noqa: B010
            raise
        return replace(reply, input_tokens=reply.input_tokens + spend.lost_input, http_attempts=spend.http), attempts

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

        endpoint = compatible_url(settings)
        transport = OpenAITransport(key, endpoint)
    else:
        endpoint = ds.base_url or dashscope.base_http_api_url or ""
        transport = NativeTransport(key, ds.base_url, ds.upload_reuse_s, ds.frames_as)
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
    return DashScopeDescriber(
        transport,
        params,
        summary,
        RetryPolicy.of(ds),
        settings.describer.concurrency,
        breaker=shared_breaker(ds.breaker_failures, ds.breaker_cooldown_s, breaker_scope(key, endpoint)),
    )
