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
    max_frames_source: str = "the model's limit"  # or "sampling.max_frames": named in errors


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
    total = math.ceil((end - start) * fps / 1000)
    if total > p.max_frames_per_job:
        raise PlanError(
            f"the job would sample {total} frames, above the limit of {p.max_frames_per_job}: "
            "lower fps or choose a shorter range",
            field="fps",
        )
    seg_ms = round(p.segment_seconds * 1000)
    step_ms = seg_ms - round(p.overlap_seconds * 1000)

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
        s += step_ms
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
