"""One job through the ports: plan -> sample -> write -> describe -> store -> summary.

The CLI runs it in process (``run_inline``); Celery tasks call ``plan``, ``run_segment`` and
``finish`` one by one. There is no second copy of this logic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from worker import failpoints
from worker.adapters.frames.local import JpegWriter, remove_tree, segment_dir
from worker.adapters.stores.sql import SqlResultStore
from worker.adapters.video import VideoReader
from worker.adapters.video.opencv import OpenCVReader
from worker.config import Settings
from worker.core import budget
from worker.core.models import Description, FrameRef, Job, JobSummary, SegmentPlan, SegmentRow, Usage, VideoInfo
from worker.core.ports import Describer, DescribeRequest, Enqueuer
from worker.core.presets import preset_for
from worker.core.prompts import DEFAULT_PRESETS, PromptSet, render, segment_variables
from worker.core.sampling import sample_times
from worker.core.segmenters import Findings
from worker.core.summary import build_summary
from worker.errors import (
    BudgetExceeded,
    DecodeError,
    DescriberAuthError,
    DescriberError,
    FramescribeError,
    InputError,
    PlanError,
    QueueUnavailable,
    StoreError,
)
from worker.options import JobOptions
from worker.service import reuse as segmenting
from worker.service.sources import local_path
from worker.summarise import summarise

log = logging.getLogger(__name__)
Event = Callable[[str, dict[str, Any]], None]


def _quiet(kind: str, data: dict[str, Any]) -> None:
    return None


@dataclass
class Ports:
    """What a job needs from the outside world; built by ``worker.bootstrap``."""

    settings: Settings
    store: SqlResultStore
    describer_for: Callable[[JobOptions], Describer]
    reader_for: Callable[[str], VideoReader] = field(default=lambda p: OpenCVReader(p))
    on_event: Event = _quiet
    prompts: dict[str, PromptSet] = field(default_factory=lambda: dict(DEFAULT_PRESETS))
    enqueuer: Enqueuer | None = None

    def queue(self) -> Enqueuer:
        if self.enqueuer is None:
            raise QueueUnavailable("no job queue is configured in this process")
        return self.enqueuer

    def open_source(self, job: Job) -> VideoReader:
        """A reader of the job's video (a URL source is downloaded first, once per machine)."""
        return self.reader_for(local_path(self.settings, job.id, job.source))


@dataclass(frozen=True, slots=True)
class Estimate:
    segments: int
    frames: int
    video_tokens: int
    calls: int
    frame_width: int
    frame_height: int
    model: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "frames": self.frames,
            "video_tokens": self.video_tokens,
            "calls": self.calls,
            "frame_size": [self.frame_width, self.frame_height],
            "model": self.model,
        }


# -- planning ---------------------------------------------------------------------------------
def options_of(job: Job) -> JobOptions:
    return JobOptions.parse(job.options)


def plans_for(
    info: VideoInfo, opts: JobOptions, settings: Settings, findings: Findings | None = None
) -> Iterator[SegmentPlan]:
    """Fixed-length plans, or the job's segmenter (scene | motion | hybrid) over an analysis pass."""
    return segmenting.build(info, opts, settings, findings)


def model_of(opts: JobOptions, settings: Settings) -> str:
    return opts.model or settings.dashscope.model


def describer_kind(opts: JobOptions, settings: Settings) -> str:
    kind = opts.describer or settings.describer.kind
    if kind == "auto":
        return "dashscope" if settings.dashscope_api_key else "local"
    return kind


def estimate(info: VideoInfo, opts: JobOptions, settings: Settings, findings: Findings | None = None) -> Estimate:
    """Pre-flight: segments, frames and the video tokens DashScope would bill. No call is made.

    Without ``findings`` (no analysis pass yet) every segmenter is estimated as fixed-length."""
    w, h = budget.frame_size(info.width, info.height, settings.sampling.max_pixels)
    kind = describer_kind(opts, settings)
    model = model_of(opts, settings) if kind == "dashscope" else None
    limits = request_limits(opts, settings)
    segments = frames = tokens = calls = 0
    for plan in plans_for(info, opts, settings, findings):
        segments += 1
        frames += plan.frame_count
        if plan.kind == "describe" and kind == "dashscope":
            calls += 1
            need = budget.video_tokens(plan.frame_count, w, h, limits)
            if need + PROMPT_HEADROOM_TOKENS > limits.max_input_tokens:
                raise PlanError(
                    f"a segment of {plan.frame_count} frames at {w}x{h} needs about {need} video tokens, above "
                    f"{model}'s input limit of {limits.max_input_tokens}: shorten segment_seconds, lower fps "
                    "or sampling.max_pixels",
                    field="segment_seconds",
                )
            tokens += need
    return Estimate(segments, frames, tokens, calls, w, h, model)


PROMPT_HEADROOM_TOKENS = 4000  # system + segment prompt + previous description


def request_limits(opts: JobOptions, settings: Settings) -> budget.ModelLimits:
    """The model's limits for one request, with the per-frame ``max_pixels`` cap DashScope applies."""
    limits = budget.limits_for(model_of(opts, settings))
    cap = opts.max_pixels or settings.dashscope.max_pixels
    if cap and cap < limits.video_max_pixels:
        limits = replace(limits, video_max_pixels=cap)
    return limits


def check_budget(est: Estimate, opts: JobOptions, settings: Settings) -> None:
    cap_tokens = opts.max_video_tokens or settings.dashscope.max_video_tokens
    cap_calls = opts.max_calls or settings.dashscope.max_calls
    if cap_tokens and est.video_tokens > cap_tokens:
        raise BudgetExceeded(
            f"estimated {est.video_tokens} video tokens exceed the cap of {cap_tokens} by "
            f"{est.video_tokens - cap_tokens}: lower fps, max_pixels or the range, or raise max_video_tokens"
        )
    if cap_calls and est.calls > cap_calls:
        raise BudgetExceeded(
            f"the job needs {est.calls} model calls, {est.calls - cap_calls} more than the cap of {cap_calls}: "
            "lengthen segments or raise max_calls"
        )


def plan(ports: Ports, job_id: str) -> list[int]:
    """Probe the video, check the budget, store one pending row per segment. Returns their indexes.

    A problem with the input, the budget or building the describer or reader fails the job with its
    reason (no segment rows) and re-raises."""
    store = ports.store
    job = store.get_job(job_id)
    try:
        opts = options_of(job)
        ports.describer_for(opts)  # a describer that cannot be built (no API key) fails the job now
        with ports.open_source(job) as reader:
            info = reader.probe()
            findings = segmenting.analyse(reader, info, opts, ports.settings)
        est = estimate(info, opts, ports.settings, findings)
        check_budget(est, opts, ports.settings)
        plans = list(plans_for(info, opts, ports.settings, findings))
    except FramescribeError as exc:
        store.set_job_state(job_id, "failed", exc.message, only_from=("queued", "running"))
        raise
    store.plan_job(job_id, info, plans)
    static = segmenting.store_static(store, job_id, plans)  # quiet spans: stored now, no model call
    store.set_job_state(job_id, "running", only_from=("queued", "running"))
    ports.on_event("planned", {"job_id": job_id, "segments": len(plans), "video": info.as_dict()})
    for index in static:
        ports.on_event("segment_done", {"job_id": job_id, "index": index, "text": segmenting.STATIC_TEXT})
    return [p.index for p in plans]


def plan_of_row(store: SqlResultStore, job_id: str, index: int) -> SegmentPlan:
    row = store.segment(job_id, index)
    fps = Fraction(row.fps or "1")
    return SegmentPlan(index, row.start_ms, row.end_ms, fps, tuple(sample_times(row.start_ms, row.end_ms, fps)))


# -- one segment ------------------------------------------------------------------------------
@dataclass
class Sampled:
    plan: SegmentPlan
    frames: list[FrameRef]
    thumbs: list[np.ndarray]
    hashes: list[int] = field(default_factory=list)  # pHash of every sampled frame (before dedup)


def sample_segment(reader: VideoReader, plan: SegmentPlan, folder: Path, settings: Settings) -> Sampled:
    """Decode the plan's frames and write them as JPEGs (the folder is emptied first: a redelivery
    rewrites it). Keeps only small analysis copies in memory."""
    remove_tree(folder)
    writer = JpegWriter(settings.sampling.max_pixels, settings.sampling.jpeg_quality)
    frames: list[FrameRef] = []
    thumbs: list[np.ndarray] = []
    try:
        for n, (t_ms, image) in enumerate(reader.frames(plan.targets_ms)):
            frames.append(writer.write(folder, n, t_ms, image))
            thumbs.append(_thumb(image))
        if len(frames) < min(settings.sampling.min_frames, plan.frame_count):
            raise DecodeError(
                f"only {len(frames)} frame(s) could be decoded between {plan.start_ms / 1000:.2f}s and "
                f"{plan.end_ms / 1000:.2f}s",
                at_ms=plan.start_ms,
            )
    except FramescribeError:
        remove_tree(folder)  # a failed segment leaves no frames behind (and a full disk gets no fuller)
        raise
    hashes = segmenting.hashes_of(thumbs)
    plan, frames, thumbs = segmenting.dedup(plan, frames, thumbs, hashes, settings)
    return Sampled(plan, frames, thumbs, hashes)


def _thumb(image: np.ndarray, width: int = 480) -> np.ndarray:
    h, w = image.shape[:2]
    if w <= width:
        return image.copy()
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def describe_and_store(
    ports: Ports, job: Job, describer: Describer, sampled: Sampled, previous: str | None = None
) -> Description:
    opts = options_of(job)
    preset_name = opts.preset or ports.settings.describer.preset
    prompts = ports.prompts.get(preset_name) or ports.prompts.get("describe") or DEFAULT_PRESETS["describe"]
    p = sampled.plan
    variables = segment_variables(job.source_name, p.start_ms, p.end_ms, float(p.fps), previous)
    template = opts.prompt or ports.settings.describer.prompt
    if template and prompts.json_output:
        template = f"{template}\n{preset_for(preset_name).schema_hint}"
    request = DescribeRequest(
        job_id=job.id,
        source_name=job.source_name,
        plan=p,
        frames=sampled.frames,
        fps=float(p.fps),
        prompt=render(template or prompts.segment, variables),
        system_prompt=prompts.system,
        preset=preset_name,
        previous=previous,
        thumbs=sampled.thumbs,
    )
    # The cache key leaves $previous out: whether the previous call had finished is timing, not content.
    key_prompt = render(template or prompts.segment, {**variables, "previous": ""})
    key = segmenting.cache_key(request, key_prompt, describer, opts, ports.settings)
    hit = segmenting.lookup(ports.store, job.id, p.index, key, sampled.hashes, ports.settings)
    if hit is not None:  # an identical call was cached, or a near-identical segment was described
        desc, source = hit
        ports.store.save_segment(job.id, p.index, desc, sampled.frames, reused_from=source)
        if source is None:
            segmenting.remember(ports.store, job.id, p.index, None, desc, sampled.hashes, ports.settings)
        return desc
    started = time.monotonic()
    desc = describer.describe(request)
    if desc.usage.latency_ms == 0:
        latency = round((time.monotonic() - started) * 1000)
        u = desc.usage
        desc = Description(
            desc.text,
            desc.structured,
            desc.describer,
            desc.model,
            Usage(u.input_tokens, u.output_tokens, u.video_tokens, u.request_id, latency, max(1, u.attempts)),
            desc.flags,
        )
    ports.store.save_segment(job.id, p.index, desc, sampled.frames)
    segmenting.remember(ports.store, job.id, p.index, key, desc, sampled.hashes, ports.settings)
    return desc


def fail(ports: Ports, job_id: str, index: int, exc: FramescribeError, start_ms: int) -> None:
    ports.store.fail_segment(job_id, index, exc.message)  # decode errors name their time themselves
    ports.on_event("segment_failed", {"job_id": job_id, "index": index, "error": exc.message})


def run_segment(ports: Ports, job_id: str, index: int, reader: VideoReader | None = None) -> str:
    """Process one segment (a Celery task body). Idempotent: a stored segment is left alone.

    Returns the segment's state; DescriberAuthError propagates (it fails the whole job)."""
    store = ports.store
    if not store.claim_segment(job_id, index):
        return store.segment_state(job_id, index) or "missing"
    job = store.get_job(job_id)
    plan_ = plan_of_row(store, job_id, index)
    own = reader is None
    try:
        rdr = reader or ports.open_source(job)
    except FramescribeError as exc:
        fail(ports, job_id, index, exc, plan_.start_ms)
        return "failed"
    try:
        reason = _cap_reason(ports, job, plan_.frame_count, pending_calls=0, pending_tokens=0)
        if reason:  # another segment already spent the budget: stop here, without a call
            raise BudgetExceeded(reason)
        sampled = sample_segment(rdr, plan_, segment_dir(ports.settings.data_dir, job_id, index), ports.settings)
        previous = _stored_description(store, job_id, index - 1)
        desc = describe_and_store(ports, job, ports.describer_for(options_of(job)), sampled, previous)
    except BudgetExceeded as exc:  # this segment only: calls other workers have in flight keep their results
        fail(ports, job_id, index, exc, plan_.start_ms)
        return "failed"
    except DescriberAuthError as exc:
        fail(ports, job_id, index, exc, plan_.start_ms)
        raise
    except FramescribeError as exc:  # input, describer (or building it), store
        fail(ports, job_id, index, exc, plan_.start_ms)
        return "failed"
    finally:
        if own:
            rdr.close()
    ports.on_event("segment_done", {"job_id": job_id, "index": index, "text": desc.text})
    return "done"


# -- finishing --------------------------------------------------------------------------------
def finish(ports: Ports, job_id: str, stopped_reason: str | None = None) -> JobSummary | None:
    """Summarise once: the caller that wins the atomic claim builds and stores the summary."""
    store = ports.store
    if not store.claim_summary(job_id):
        return None
    job = store.get_job(job_id)
    duration = int((job.video or {}).get("duration_ms", 0))
    stopped_reason = stopped_reason or (job.video or {}).get("warning") or _cancel_reason(store, job_id)
    summary = job_summary(ports, job, duration, stopped_reason)
    opts = options_of(job)
    if describer_kind(opts, ports.settings) == "dashscope":
        limits = request_limits(opts, ports.settings)
        saved = segmenting.tokens_saved(store.segment_rows(job_id), job.video, limits, ports.settings)
        summary = replace(summary, video_tokens_saved=saved)
    error = job.error
    if summary.state == "failed" and not error:
        failed = next((r.error for r in store.segment_rows(job_id) if r.state == "failed"), None)
        error = f"no segment could be described: {failed}" if failed else "no segment could be described"
    store.finish_job(job_id, summary, summary.state, error)
    ports.on_event("job_done", {"job_id": job_id, "state": summary.state})
    return summary


def job_summary(ports: Ports, job: Job, duration_ms: int, stopped_reason: str | None) -> JobSummary:
    """A DashScope summary over the segment descriptions when the job used DashScope, else local."""
    opts = options_of(job)

    def rows() -> Iterator[SegmentRow]:
        return ports.store.segment_rows(job.id)

    model: Any = None
    if describer_kind(opts, ports.settings) == "dashscope":
        try:
            model = ports.describer_for(opts)
        except FramescribeError as exc:
            log.warning("job %s: no model for the summary (%s); using the local summary", job.id, exc.message)
    if not callable(getattr(model, "complete", None)):
        return build_summary(rows(), duration_ms, stopped_reason)
    preset = ports.prompts.get(opts.preset or ports.settings.describer.preset) or DEFAULT_PRESETS["describe"]
    return summarise(
        rows,
        duration_ms,
        stopped_reason,
        model=model,
        template=preset.summary,
        source_name=job.source_name,
        batch_tokens=ports.settings.dashscope.summary_batch_tokens,
        job_id=job.id,
    )


def _cancel_reason(store: SqlResultStore, job_id: str) -> str | None:
    return next((r.error for r in store.segment_rows(job_id) if r.state == "cancelled" and r.error), None)


def _stored_description(store: SqlResultStore, job_id: str, index: int) -> str | None:
    if index < 0:
        return None
    try:
        row = store.segment(job_id, index)
    except FramescribeError:
        return None
    return row.description if row.state == "done" else None


# -- in process -------------------------------------------------------------------------------
def run_inline(
    ports: Ports, job_id: str, finish_job: Callable[[Ports, str, str | None], JobSummary | None] = finish
) -> JobSummary:
    """The embedded runner: one sequential decode pass feeds a bounded pool of describer calls,
    so sampling the next segments overlaps the calls in flight. ``finish_job`` summarises at the end
    (the job service passes its own, which also sends the webhook)."""
    store = ports.store
    indexes = plan(ports, job_id)
    job = store.get_job(job_id)
    opts = options_of(job)
    describer: Describer = _Failpoints(ports.describer_for(opts), job_id)
    limit = max(1, ports.settings.describer.concurrency)
    wait_previous = ports.settings.describer.continuity
    stop: str | None = None
    inflight: deque[tuple[int, Future[Description], int]] = deque()  # (index, call, estimated video tokens)
    before: Future[Description] | None = None  # the previous segment's call, for $previous
    flying: dict[int, tuple[list[int], Future[Description]]] = {}  # frame hashes of calls in flight
    halt = threading.Event()  # set by a call refused for its credentials: queued calls are not made

    def settle(block: bool) -> None:
        nonlocal stop
        while inflight and (block or inflight[0][1].done() or len(inflight) > limit):
            index, fut, _ = inflight.popleft()
            try:
                desc = fut.result()
                ports.on_event("segment_done", {"job_id": job_id, "index": index, "text": desc.text})
            except DescriberAuthError as exc:
                fail(ports, job_id, index, exc, 0)
                if stop is None:
                    store.set_job_state(job_id, "running", exc.message, only_from=("running",))
                stop = exc.message
            except (InputError, DescriberError, StoreError) as exc:
                fail(ports, job_id, index, exc, 0)
            except _Halted:
                pass  # never called; cancelled below with the reason
            if not block and len(inflight) <= limit:
                return

    with (
        ports.open_source(job) as reader,
        ThreadPoolExecutor(limit, thread_name_prefix="describe") as pool,
    ):
        for index in indexes:
            if stop or store.get_job(job_id).state == "cancelled":
                break
            plan_ = plan_of_row(store, job_id, index)
            stop = _cap_reason(ports, job, plan_.frame_count, len(inflight), sum(t for _, _, t in inflight))
            if stop:  # the next call would pass a cap: keep what is done, describe no more
                break
            if not store.claim_segment(job_id, index):
                before = None
                continue
            try:
                folder = segment_dir(ports.settings.data_dir, job_id, index)
                sampled = sample_segment(reader, plan_, folder, ports.settings)
            except (InputError, StoreError) as exc:
                fail(ports, job_id, index, exc, plan_.start_ms)
                before = None
                continue
            segmenting.wait_for_twin(sampled.hashes, flying, ports.settings)  # then reuse it, no call
            fut = pool.submit(_describe_after, ports, job, describer, sampled, before, wait_previous, halt)
            flying[index] = (sampled.hashes, fut)
            inflight.append((index, fut, _segment_tokens(ports, job, plan_.frame_count)))
            before = fut
            settle(block=False)
        settle(block=True)
    if stop:
        store.cancel_remaining(job_id, stop)
    summary = finish_job(ports, job_id, stop)
    if summary is None:  # somebody else summarised (a cancel, or a concurrent runner)
        stored = store.get_job(job_id).summary or {}
        return build_summary(store.segment_rows(job_id), int(stored.get("duration_ms", 0)), stop)
    return summary


class _Failpoints:
    """The test failpoints around each call (``worker.failpoints``; off unless the tests arm them)."""

    def __init__(self, inner: Describer, job_id: str) -> None:
        self.inner, self.name, self.job_id = inner, inner.name, job_id

    def describe(self, request: DescribeRequest) -> Description:
        failpoints.hit("before_describe", self.job_id, request.plan.index)
        desc = self.inner.describe(request)
        failpoints.hit("after_describe", self.job_id, request.plan.index)
        return desc

    def __getattr__(self, name: str) -> Any:  # complete(), listener ... of the real describer
        return getattr(self.inner, name)


class _Halted(Exception):
    """A queued call dropped because an earlier one was refused for its credentials."""


def _describe_after(
    ports: Ports,
    job: Job,
    describer: Describer,
    sampled: Sampled,
    before: Future[Description] | None,
    wait: bool,
    halt: threading.Event | None = None,
) -> Description:
    """Describe with the previous segment's description as context: waited for when ``continuity``
    is on (calls run one after another), else only when it has already finished."""
    previous = None
    if before is not None and (wait or before.done()):
        try:
            previous = before.result().text
        except (FramescribeError, _Halted):
            previous = None
    if halt is not None and halt.is_set():
        raise _Halted
    try:
        return describe_and_store(ports, job, describer, sampled, previous)
    except DescriberAuthError:
        if halt is not None:
            halt.set()
        raise


def _segment_tokens(ports: Ports, job: Job, frames: int) -> int:
    """Estimated video tokens of one segment's call (0 unless the job uses DashScope)."""
    opts = options_of(job)
    video = job.video or {}
    if describer_kind(opts, ports.settings) != "dashscope" or not video.get("width"):
        return 0
    w, h = budget.frame_size(int(video["width"]), int(video["height"]), ports.settings.sampling.max_pixels)
    return budget.video_tokens(frames, w, h, request_limits(opts, ports.settings))


def _cap_reason(ports: Ports, job: Job, frames: int, pending_calls: int, pending_tokens: int) -> str | None:
    """Why the next call must not be made: it would pass the job's ``max_calls`` or ``max_video_tokens``
    counting what is done and what is in flight. Calls are model calls for segments (not retries)."""
    opts = options_of(job)
    settings = ports.settings
    cap_tokens = opts.max_video_tokens or settings.dashscope.max_video_tokens
    cap_calls = opts.max_calls or settings.dashscope.max_calls
    if not (cap_tokens or cap_calls) or describer_kind(opts, settings) != "dashscope":
        return None
    store = ports.store
    made = store.counts(job.id).get("done", 0)
    if cap_calls and made + pending_calls + 1 > cap_calls:
        return f"stopped early: call cap of {cap_calls} reached ({made + pending_calls} calls made)"
    if cap_tokens:
        used = store.usage(job.id)["video_tokens"] + pending_tokens
        need = _segment_tokens(ports, job, frames)
        if used + need > cap_tokens:
            return (
                f"stopped early: video token cap of {cap_tokens} reached ({used} used or in flight; "
                f"the next segment needs about {need})"
            )
    return None


def frames_of(store: SqlResultStore, job_id: str, index: int) -> Sequence[FrameRef]:
    return store.frames(job_id, index)
