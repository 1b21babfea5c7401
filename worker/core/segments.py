"""Fixed-length segment planning: windows of sample times, each within the model's frame limits."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

from worker.core.models import SegmentPlan
from worker.core.sampling import as_fraction, sample_times, spread
from worker.errors import PlanError


@dataclass(frozen=True, slots=True)
class PlanParams:
    fps: float
    segment_seconds: float
    overlap_seconds: float = 0.0
    min_frames: int = 4
    max_frames: int = 512
    start_s: float | None = None
    end_s: float | None = None
    max_frames_per_job: int = 200_000
    max_segments_per_job: int = 20_000
    max_frames_source: str = "the model's limit"  # or "sampling.max_frames": named in errors


MIN_STEP_MS = 100  # segments must advance at least this much: overlap may not approach the segment length


def step_ms(segment_seconds: float, overlap_seconds: float) -> int:
    """The distance between segment starts in whole milliseconds; PlanError unless >= ``MIN_STEP_MS``.

    Checked on the integer values the planner really uses, so a float overlap a hair below the
    segment length (1 s - 0.9996 s) cannot round to a step of 0 and plan forever."""
    for name, value in (("segment_seconds", segment_seconds), ("overlap_seconds", overlap_seconds)):
        if not math.isfinite(value) or value < 0 or value > 10**7:
            raise PlanError(f"{name} must be a finite number of seconds, got {value}", field=name)
    seg_ms, overlap_ms = round(segment_seconds * 1000), round(overlap_seconds * 1000)
    if seg_ms < MIN_STEP_MS:
        raise PlanError(f"segment_seconds must be at least {MIN_STEP_MS / 1000:g}", field="segment_seconds")
    if seg_ms - overlap_ms < MIN_STEP_MS:
        raise PlanError(
            f"overlap_seconds ({overlap_seconds:g}) must leave segments advancing by at least "
            f"{MIN_STEP_MS / 1000:g}s (segment_seconds is {segment_seconds:g}): lower the overlap",
            field="overlap_seconds",
        )
    return seg_ms - overlap_ms


def clip_range(duration_ms: int, start_s: float | None, end_s: float | None) -> tuple[int, int]:
    """The ``[start, end)`` range in ms, clipped to the video; refuses empty or inverted ranges."""
    for name, value in (("start", start_s), ("end", end_s)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise PlanError(f"{name} must be a time in seconds ≥ 0, got {value}", field=name)
    start = round((start_s or 0.0) * 1000)
    end = duration_ms if end_s is None else min(duration_ms, round(end_s * 1000))
    if start >= duration_ms:
        raise PlanError(
            f"start {start / 1000:.3f}s is past the end of the video ({duration_ms / 1000:.3f}s)",
            field="start",
        )
    if end <= start:
        raise PlanError(f"end {end / 1000:.3f}s is not after start {start / 1000:.3f}s", field="end")
    return start, end


def check_params(p: PlanParams) -> Fraction:
    """Validate the knobs; returns the sampling rate as an exact fraction."""
    fps = as_fraction(p.fps)
    if not math.isfinite(p.segment_seconds) or p.segment_seconds <= 0:
        raise PlanError(f"segment_seconds must be > 0, got {p.segment_seconds}", field="segment_seconds")
    if not 0 <= p.overlap_seconds < p.segment_seconds:
        raise PlanError(
            f"overlap_seconds ({p.overlap_seconds}) must be ≥ 0 and shorter than segment_seconds ({p.segment_seconds})",
            field="overlap_seconds",
        )
    step_ms(p.segment_seconds, p.overlap_seconds)
    per_segment = math.floor(p.segment_seconds * fps)
    if per_segment > p.max_frames:
        raise PlanError(
            f"{p.segment_seconds:g}s segments at {float(fps):g} fps hold {per_segment} frames, above "
            f"{p.max_frames_source} of {p.max_frames}: shorten segment_seconds or lower fps",
            field="segment_seconds",
        )
    if per_segment < p.min_frames:
        raise PlanError(
            f"{p.segment_seconds:g}s segments at {float(fps):g} fps hold only {per_segment} frames; "
            f"each segment needs at least {p.min_frames}: raise fps or segment_seconds",
            field="segment_seconds",
        )
    return fps


def plan_segments(duration_ms: int, source_fps: float, p: PlanParams, *, first_index: int = 0) -> Iterator[SegmentPlan]:
    """Yield segments covering ``[start, end)`` of a video, lazily.

    Every segment holds ``min_frames..max_frames`` target times, increasing and inside the range.
    A short tail is merged into the segment before it when that stays within ``max_frames``;
    otherwise it is re-sampled with ``min_frames`` evenly spread times (and its true, higher fps).
    """
    fps = check_params(p)
    start, end = clip_range(duration_ms, p.start_s, p.end_s)
    frame_ms = 1000 / source_fps if source_fps > 0 and math.isfinite(source_fps) else 1000 / 30
    source_frames = round((end - start) / frame_ms)
    if source_frames < p.min_frames:
        raise PlanError(
            f"the selected range holds only {source_frames} video frame(s); at least {p.min_frames} are needed"
        )
    seg_ms, step = round(p.segment_seconds * 1000), step_ms(p.segment_seconds, p.overlap_seconds)
    check_totals(end - start, seg_ms, step, fps, p)

    yield from bounded(_fixed(start, end, seg_ms, step, fps, frame_ms, p, first_index), p)


def check_totals(span_ms: int, seg_ms: int, step: int, fps: Fraction, p: PlanParams) -> None:
    """Refuse before planning when the segments and frames the plan would really make (overlap counted:
    every frame of an overlap is sampled and paid again) exceed the job caps."""
    segments = 1 if span_ms <= seg_ms else 1 + math.ceil((span_ms - seg_ms) / step)
    if segments > p.max_segments_per_job:
        raise PlanError(
            f"the job would make {segments} segments, above the limit of {p.max_segments_per_job}: "
            "lengthen segment_seconds, lower overlap_seconds or choose a shorter range",
            field="segment_seconds",
        )
    frames = math.ceil(min(span_ms, seg_ms) * fps / 1000) * segments
    if frames > p.max_frames_per_job:
        raise PlanError(
            f"the job would sample {frames} frames (overlaps counted), above the limit of "
            f"{p.max_frames_per_job}: lower fps or overlap_seconds, or choose a shorter range",
            field="fps",
        )


def bounded(plans: Iterator[SegmentPlan], p: PlanParams) -> Iterator[SegmentPlan]:
    """Stop any planner at the job caps: counts the segments and sampled frames it really yields."""
    frames = 0
    for segments, plan in enumerate(plans, start=1):
        frames += plan.frame_count
        if segments > p.max_segments_per_job:
            raise PlanError(
                f"the job would make more than {p.max_segments_per_job} segments: lengthen segment_seconds "
                "or choose a shorter range",
                field="segment_seconds",
            )
        if frames > p.max_frames_per_job:
            raise PlanError(
                f"the job would sample more than {p.max_frames_per_job} frames: lower fps or choose a shorter range",
                field="fps",
            )
        yield plan


def _fixed(
    start: int, end: int, seg_ms: int, step: int, fps: Fraction, frame_ms: float, p: PlanParams, first_index: int
) -> Iterator[SegmentPlan]:
    pending: SegmentPlan | None = None
    index = first_index
    s = start
    while s < end:
        e = min(s + seg_ms, end)
        targets = tuple(sample_times(s, e, fps))
        if len(targets) < p.min_frames:  # the tail
            yield from _close_tail(pending, s, e, start, end, fps, frame_ms, p, index)
            return
        if pending is not None:
            yield pending
        pending = SegmentPlan(index, s, e, fps, targets)
        index += 1
        if e >= end:
            break
        s += step
    if pending is not None:
        yield pending


def _close_tail(
    pending: SegmentPlan | None,
    s: int,
    e: int,
    start: int,
    end: int,
    fps: Fraction,
    frame_ms: float,
    p: PlanParams,
    index: int,
) -> Iterator[SegmentPlan]:
    if pending is not None:
        merged = tuple(sample_times(pending.start_ms, e, fps))
        if len(merged) <= p.max_frames:
            yield SegmentPlan(pending.index, pending.start_ms, e, fps, merged)
            return
        yield pending
    # Re-sample: widen the tail backwards until it spans min_frames source frames.
    need_ms = math.ceil(p.min_frames * frame_ms)
    tail_start = max(start, min(s, end - need_ms))
    times, tail_fps = spread(tail_start, e, p.min_frames)
    yield SegmentPlan(index if pending is None else pending.index + 1, tail_start, e, tail_fps, times)


def count_segments(duration_ms: int, source_fps: float, p: PlanParams) -> int:
    return sum(1 for _ in plan_segments(duration_ms, source_fps, p))
