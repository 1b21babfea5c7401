"""Planning a job: options -> estimate -> budget check -> one pending row per segment; the caps during a run.

``plan`` probes the video (and runs the scene/motion analysis pass the segmenter needs), refuses plans
over the caps, stores the segments and the quiet spans (``static``, no model call) at once; a plan task
delivered again to a job already planned uses the stored plan (no second probe or analysis pass).
``reserve_call`` reserves a segment's first request within ``max_calls`` and ``max_video_tokens`` (``caps.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from worker import spend
from worker.config import SamplingSettings, Settings
from worker.core import budget
from worker.core.models import Description, Job, SegmentPlan, SegmentRow, VideoInfo
from worker.core.ports import Analyser, FrameKeeper, ResultStore, VideoReader
from worker.core.sampling import as_fraction, sample_times
from worker.core.segmenters import Findings, HybridParams, MotionParams, build_plans
from worker.core.segments import clip_range
from worker.core.states import LIVE_JOB, JobState
from worker.errors import BudgetExceeded, FramescribeError, PlanError
from worker.options import JobOptions, plan_params
from worker.service import caps
from worker.service.context import Ports
from worker.service.options import resolve

log = logging.getLogger(__name__)
STATIC_TEXT = "No activity (static camera)."
GATE = "gate"  # the describer name of segments no model saw


@dataclass(frozen=True, slots=True)
class Estimate:
    segments: int
    frames: int
    video_tokens: int
    calls: int
    frame_width: int
    frame_height: int
    model: str | None
    extras: dict[str, Any] = field(default_factory=dict)  # summary calls, input/output tokens, cost, segmentation

    def as_dict(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "frames": self.frames,
            "video_tokens": self.video_tokens,
            "calls": self.calls,
            "frame_size": [self.frame_width, self.frame_height],
            "model": self.model,
            **self.extras,
        }


def options_of(job: Job) -> JobOptions:
    return JobOptions.parse(job.options)


def plans_for(
    info: VideoInfo, opts: JobOptions, settings: Settings, findings: Findings | None = None
) -> Iterator[SegmentPlan]:
    """Fixed-length plans, or the job's segmenter (scene | motion | hybrid) over an analysis pass."""
    return build(info, opts, settings, findings)


def model_of(opts: JobOptions, settings: Settings) -> str:
    return resolve(opts, settings).model


def describer_kind(opts: JobOptions, settings: Settings) -> str:
    return resolve(opts, settings).describer


def estimate(info: VideoInfo, opts: JobOptions, settings: Settings, findings: Findings | None = None) -> Estimate:
    """Pre-flight: segments, frames and the video tokens DashScope would bill. No call is made.

    Without ``findings`` (no analysis pass yet) every segmenter is estimated as fixed-length."""
    w, h = spend.frame_size(info.width, info.height, opts, settings)  # the size frames are written at
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
    extras = spend.estimate_extras(calls, tokens, opts, settings)
    analysed = "analysed" if findings is not None else "estimated as fixed (no analysis pass)"
    extras["segmentation"] = "fixed" if segmenter_of(opts, settings) == "fixed" else analysed
    return Estimate(segments, frames, tokens, calls, w, h, model, extras)


PROMPT_HEADROOM_TOKENS = 4000  # system + segment prompt + previous description


def request_limits(opts: JobOptions, settings: Settings) -> budget.ModelLimits:
    """The model's limits for one request, with the per-frame ``max_pixels`` cap DashScope applies."""
    r = resolve(opts, settings)
    limits = budget.limits_for(r.model)
    cap = r.max_pixels
    if cap and cap < limits.video_max_pixels:
        limits = replace(limits, video_max_pixels=cap)
    return limits


def check_budget(est: Estimate, opts: JobOptions, settings: Settings) -> None:
    r = resolve(opts, settings)
    cap_tokens, cap_calls = r.max_video_tokens, r.max_calls
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
    if already_planned(job):
        return stored_plan(ports, job)
    keeper = None
    try:
        opts = options_of(job)
        ports.describer_for(opts)  # a describer that cannot be built (no API key) fails the job now
        with ports.open_source(job) as reader:
            info = reader.probe()
            keeper = keeper_for(ports, job_id, info, opts)
            findings = analyse(ports, reader, info, opts, keeper)
        est = estimate(info, opts, ports.settings, findings)
        check_budget(est, opts, ports.settings)
        plans = list(plans_for(info, opts, ports.settings, findings))
        if keeper is not None and ports.handover is not None:
            ports.handover.hand_over(keeper, plans)  # before the rows exist: no segment runs yet
            keeper = None
    except FramescribeError as exc:
        store.set_job_state(job_id, JobState.FAILED, exc.message, only_from=LIVE_JOB)
        raise
    finally:
        if keeper is not None and ports.handover is not None:
            ports.handover.discard(keeper)
    store.plan_job(job_id, info, plans)
    static = store_static(store, job_id, plans)  # quiet spans: stored now, no model call
    store.set_job_state(job_id, JobState.RUNNING, only_from=LIVE_JOB)
    ports.on_event("planned", {"job_id": job_id, "segments": len(plans), "video": info.as_dict()})
    for index in static:
        ports.on_event("segment_done", {"job_id": job_id, "index": index, "text": STATIC_TEXT})
    return [p.index for p in plans]


def already_planned(job: Job) -> bool:
    """A running job with its video facts and segments stored: a plan task delivered again (its worker died
    after planning, or the broker redelivered) finds its plan done. A retried job is queued and planned anew."""
    return job.state == JobState.RUNNING and bool(job.video) and job.segment_count > 0


def stored_plan(ports: Ports, job: Job) -> list[int]:
    """The stored plan's segments: the video is not probed again and the analysis pass is not run again."""
    indexes = [row.index for row in ports.store.segment_rows(job.id)]
    log.info("job %s: already planned (%d segments); using the stored plan", job.id, len(indexes))
    ports.on_event("planned", {"job_id": job.id, "segments": len(indexes), "video": job.video})
    return indexes


def plan_of_row(store: ResultStore, job_id: str, index: int) -> SegmentPlan:
    return plan_from(store.segment(job_id, index))


def plan_from(row: SegmentRow) -> SegmentPlan:
    """The plan a stored segment row describes (its span, fps and sampling targets)."""
    fps = Fraction(row.fps or "1")
    return SegmentPlan(row.index, row.start_ms, row.end_ms, fps, tuple(sample_times(row.start_ms, row.end_ms, fps)))


def segmenter_of(opts: JobOptions, settings: Settings) -> str:
    return resolve(opts, settings).segmenter


def motion_params(s: SamplingSettings) -> MotionParams:
    return MotionParams(s.motion_threshold, s.min_event_s, s.pad_s, s.merge_gap_s)


def hybrid_params(s: SamplingSettings) -> HybridParams:
    return HybridParams(s.min_seconds, s.max_seconds)


def analyse(
    ports: Ports, reader: VideoReader, info: VideoInfo, opts: JobOptions, keeper: FrameKeeper | None = None
) -> Findings | None:
    """The analysis pass a scene/motion/hybrid job needs (None for fixed); ``keeper`` keeps the frames
    its segments will sample."""
    return analysis_pass(ports.analyser, ports.settings, reader, info, opts, keeper)


def keeper_for(ports: Ports, job_id: str, info: VideoInfo, opts: JobOptions) -> FrameKeeper | None:
    """A keeper of the analysis pass's frames for a scene or hybrid job whose segments sample exact frames
    (no keyframe tolerance); None otherwise (the segments decode their frames)."""
    s = ports.settings
    kind = segmenter_of(opts, s)
    if ports.handover is None or kind not in ("scene", "hybrid") or s.sampling.keyframe_tolerance > 0:
        return None
    p = plan_params(opts, s, source_fps=info.fps)
    start, _ = clip_range(info.duration_ms, p.start_s, p.end_s)
    frame_ms = 1000 / info.fps if info.fps > 0 else 1000 / 30
    hold = p.min_frames * frame_ms  # a shorter shot joins the one before it (``merge_short``)
    if kind == "hybrid":
        hold = max(hold, s.sampling.min_seconds * 1000)
    budget_ = spend.frame_budget(opts, s)
    return ports.handover.keeper(job_id, start, as_fraction(p.fps), budget_, hold + frame_ms)


def analysis_pass(
    analyser: Analyser,
    settings: Settings,
    reader: VideoReader,
    info: VideoInfo,
    opts: JobOptions,
    keeper: FrameKeeper | None = None,
) -> Findings | None:
    """``analyse`` with only what it needs (the dry run builds no store and keeps no frames)."""
    if segmenter_of(opts, settings) == "fixed":
        return None
    p = plan_params(opts, settings, source_fps=info.fps)
    start, end = clip_range(info.duration_ms, p.start_s, p.end_s)
    motion = motion_params(settings.sampling)
    if keeper is None:
        findings = analyser.analyse(reader, start, end, motion)
    else:
        findings = analyser.analyse(reader, start, end, motion, keeper)
    log.info(
        "%s: analysed %d frames: %d cut(s), %d motion event(s)",
        reader.path.name,
        findings.samples,
        len(findings.cuts_ms),
        len(findings.events),
    )
    return findings


def build(info: VideoInfo, opts: JobOptions, settings: Settings, findings: Findings | None) -> Iterator[SegmentPlan]:
    """The job's plans: fixed-length without findings, else the job's segmenter over them."""
    p = plan_params(opts, settings, source_fps=info.fps)
    return build_plans(
        segmenter_of(opts, settings), info.duration_ms, info.fps, p, findings, hybrid_params(settings.sampling)
    )


def store_static(store: ResultStore, job_id: str, plans: Iterable[SegmentPlan]) -> list[int]:
    """Store every static plan as a described ``static`` segment; returns their indexes."""
    done = []
    for p in plans:
        if p.kind != "static":
            continue
        desc = Description(STATIC_TEXT, {"static": True}, describer=GATE, model=None)
        if store.save_segment(job_id, p.index, desc, [], state="static"):
            done.append(p.index)
    return done


# -- caps during the run --------------------------------------------------------------------
def segment_tokens(ports: Ports, job: Job, frames: int) -> int:
    """Estimated video tokens of one segment's call (0 unless the job uses DashScope)."""
    opts = options_of(job)
    video = job.video or {}
    if describer_kind(opts, ports.settings) != "dashscope" or not video.get("width"):
        return 0
    w, h = spend.frame_size(int(video["width"]), int(video["height"]), opts, ports.settings)
    return budget.video_tokens(frames, w, h, request_limits(opts, ports.settings))


def job_caps(ports: Ports, job: Job) -> caps.Caps | None:
    """The job's running caps (None: it pays for nothing, or has no cap)."""
    r = resolve(options_of(job), ports.settings)
    if not r.paid or not (r.max_calls or r.max_video_tokens):
        return None
    # a reservation outlives one request (its whole-attempt deadline) with room to spare
    ttl = 2 * ports.settings.dashscope.timeout_s + ports.settings.worker.lease_ttl_s
    return caps.Caps(job.id, ports.store, r.max_calls, r.max_video_tokens, ttl)


def reserve_call(ports: Ports, job: Job, frames: int, index: int) -> caps.Ticket | None:
    """Reserve a segment's first model request before sampling it: BudgetExceeded when it would pass
    ``max_calls`` or ``max_video_tokens`` counting what is stored and what is in flight (``caps.py``).
    None when the job has no cap; else release the ticket once the segment's usage is stored."""
    c = job_caps(ports, job)
    return None if c is None else caps.reserve(c, segment_tokens(ports, job, frames), index)
