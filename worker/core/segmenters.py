"""Segments that follow the video: scene, motion and hybrid planners over a stream of analysis samples.

The analysis adapter decodes the video once and yields one ``Sample`` per analysed frame. ``collect``
folds that stream into cut times and activity events (memory grows with the number of cuts and events,
never with the video's length); the planners turn them into ``SegmentPlan`` s. Every described plan holds
``min_frames..max_frames`` targets equal to ``sample_times(start, end, fps)``, and ``fps`` is the true rate
of those targets (a short span is re-sampled with ``min_frames`` evenly spread times and its own rate).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

from worker.core.models import SegmentPlan
from worker.core.sampling import as_fraction, sample_times, spread
from worker.core.segments import PlanParams, bounded, clip_range, plan_segments
from worker.errors import PlanError

Span = tuple[int, int]
SEGMENTERS = ("fixed", "scene", "motion", "hybrid")


@dataclass(frozen=True, slots=True)
class Sample:
    """One analysed frame: its time, its motion score (foreground fraction, 0..1) and the cuts reported
    while analysing it (detectors may report a cut a few frames late, with the cut's own time)."""

    t_ms: int
    motion: float = 0.0
    cuts_ms: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MotionParams:
    """DVR-Scan style event detection over motion scores."""

    threshold: float = 0.002  # a sample is active when its foreground fraction reaches this
    min_event_s: float = 0.5  # shorter activity (after merging) is noise
    pad_s: float = 1.0  # kept before and after each event
    merge_gap_s: float = 2.0  # events separated by less quiet than this become one


@dataclass(frozen=True, slots=True)
class HybridParams:
    min_seconds: float = 2.0  # scenes shorter than this are merged into a neighbour
    max_seconds: float = 30.0  # longer scenes (and motion events) are split into near-equal parts


@dataclass(frozen=True, slots=True)
class Findings:
    """What one analysis pass found between ``start_ms`` and ``until_ms`` (where analysis stopped)."""

    start_ms: int
    until_ms: int
    cuts_ms: tuple[int, ...]
    events: tuple[Span, ...]
    samples: int


# -- folding the sample stream ------------------------------------------------------------------
def collect(samples: Iterable[Sample], motion: MotionParams, start_ms: int, end_ms: int) -> Findings:
    """Cuts inside ``(start, end)`` and padded, merged activity events inside ``[start, end)``."""
    cuts: set[int] = set()
    runs: list[Span] = []
    run: list[int] | None = None  # [first active t, end of last active sample]
    last_t: int | None = None
    period = 0
    active_prev = False
    n = 0
    for s in samples:
        n += 1
        cuts.update(c for c in s.cuts_ms if start_ms < c < end_ms)
        if last_t is not None:
            period = max(1, s.t_ms - last_t)
            if active_prev and run is not None:
                run[1] = s.t_ms  # the previous active sample lasted until this one
        active = s.motion >= motion.threshold
        if active:
            if run is not None and s.t_ms - run[1] > motion.merge_gap_s * 1000:
                runs.append((run[0], run[1]))
                run = None
            if run is None:
                run = [s.t_ms, s.t_ms]
        active_prev = active
        last_t = s.t_ms
    until = start_ms if last_t is None else min(end_ms, last_t + max(period, 1))
    if run is not None:
        if active_prev:
            run[1] = until
        runs.append((run[0], run[1]))
    return Findings(start_ms, until, tuple(sorted(cuts)), tuple(events_from_runs(runs, motion, start_ms, end_ms)), n)


def events_from_runs(runs: Iterable[Span], m: MotionParams, start_ms: int, end_ms: int) -> Iterator[Span]:
    """Drop runs shorter than ``min_event_s``, pad the rest, merge those closer than ``merge_gap_s``."""
    pad = round(m.pad_s * 1000)
    gap = round(m.merge_gap_s * 1000)
    pending: Span | None = None
    for s, e in runs:
        if e - s < m.min_event_s * 1000:
            continue
        padded = (max(start_ms, s - pad), min(end_ms, e + pad))
        if pending is not None and padded[0] - pending[1] < gap:
            pending = (pending[0], max(pending[1], padded[1]))
            continue
        if pending is not None:
            yield pending
        pending = padded
    if pending is not None:
        yield pending


# -- building blocks ------------------------------------------------------------------------------
def count_times(start_ms: int, end_ms: int, fps: Fraction) -> int:
    """``len(list(sample_times(start_ms, end_ms, fps)))`` without building the list."""
    if end_ms <= start_ms:
        return 0
    n = math.ceil(Fraction(end_ms - start_ms) * fps / 1000)
    while n > 0 and start_ms + round(Fraction(1000 * (n - 1)) / fps) >= end_ms:
        n -= 1
    while start_ms + round(Fraction(1000 * n) / fps) < end_ms:
        n += 1
    return n


def scenes(start_ms: int, end_ms: int, cuts_ms: Iterable[int]) -> list[Span]:
    """``[start, c1), [c1, c2), …, [cn, end)`` for the cuts strictly inside the range."""
    bounds = [start_ms, *sorted({c for c in cuts_ms if start_ms < c < end_ms}), end_ms]
    return list(itertools.pairwise(bounds))


def merge_short(spans: Sequence[Span], min_ms: float) -> list[Span]:
    """Merge every span shorter than ``min_ms`` into the one before it (the first into the next)."""
    out: list[Span] = []
    for s, e in spans:
        if out and (e - s < min_ms or out[-1][1] - out[-1][0] < min_ms):
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def source_frames(start_ms: int, end_ms: int, frame_ms: float) -> int:
    return math.floor((end_ms - start_ms) / frame_ms + 1e-6)


def pieces(
    start_ms: int, end_ms: int, fps: Fraction, p: PlanParams, frame_ms: float, max_ms: float | None = None
) -> list[tuple[int, int, Fraction, tuple[int, ...]]]:
    """Describe ``[start, end)`` as ``(start, end, fps, targets)`` parts of ``min..max_frames`` targets.

    A span with fewer than ``min_frames`` samples is re-sampled with ``min_frames`` spread times (their
    true, higher rate); one too long for ``max_frames`` (or ``max_ms``) is split into near-equal parts at
    sample times. Returns ``[]`` when the span holds fewer than ``min_frames`` video frames."""
    n = count_times(start_ms, end_ms, fps)
    if n < p.min_frames:
        if source_frames(start_ms, end_ms, frame_ms) < p.min_frames:
            return []
        times, true_fps = spread(start_ms, end_ms, p.min_frames)
        return [(start_ms, end_ms, true_fps, times)]
    k = 1
    if n > p.max_frames:
        k = math.ceil(n / (p.max_frames - 1))  # -1: a part's own grid may round one target more
    if max_ms:
        k = max(k, math.ceil((end_ms - start_ms) / max_ms))
    k = max(1, min(k, n // p.min_frames))
    if k == 1:
        return [(start_ms, end_ms, fps, tuple(sample_times(start_ms, end_ms, fps)))]
    base, extra = divmod(n, k)
    out = []
    first = 0
    for j in range(k):
        size = base + (1 if j < extra else 0)
        s = start_ms if j == 0 else start_ms + round(Fraction(1000 * first) / fps)
        e = end_ms if j == k - 1 else start_ms + round(Fraction(1000 * (first + size)) / fps)
        out.append((s, e, fps, tuple(sample_times(s, e, fps))))
        first += size
    return out


def _frame_ms(source_fps: float) -> float:
    return 1000 / source_fps if source_fps > 0 and math.isfinite(source_fps) else 1000 / 30


def _job_range(duration_ms: int, source_fps: float, p: PlanParams) -> tuple[int, int, Fraction]:
    fps = as_fraction(p.fps)
    start, end = clip_range(duration_ms, p.start_s, p.end_s)
    if source_frames(start, end, _frame_ms(source_fps)) < p.min_frames:
        raise PlanError(
            f"the selected range holds only {source_frames(start, end, _frame_ms(source_fps))} video frame(s); "
            f"at least {p.min_frames} are needed"
        )
    return start, end, fps


def _budgeted(plans: Iterable[SegmentPlan], p: PlanParams) -> Iterator[SegmentPlan]:
    """Every planner stops at the job's frame and segment caps (``segments.bounded``)."""
    return bounded(iter(plans), p)


def _described(spans: Iterable[Span], fps: Fraction, p: PlanParams, frame_ms: float, max_ms: float | None,
               first_index: int) -> Iterator[SegmentPlan]:  # fmt: skip
    index = first_index
    for s, e in spans:
        for ps, pe, pfps, targets in pieces(s, e, fps, p, frame_ms, max_ms):
            yield SegmentPlan(index, ps, pe, pfps, targets)
            index += 1


# -- the planners -------------------------------------------------------------------------------
def plan_scene(
    duration_ms: int, source_fps: float, p: PlanParams, findings: Findings, *, first_index: int = 0
) -> Iterator[SegmentPlan]:
    """One segment per shot (split only above ``max_frames``): no segment spans a cut, except a shot
    too short to hold ``min_frames`` video frames, which joins its neighbour."""
    start, end, fps = _job_range(duration_ms, source_fps, p)
    frame_ms = _frame_ms(source_fps)
    shots = merge_short(scenes(start, end, findings.cuts_ms), p.min_frames * frame_ms)
    yield from _budgeted(_described(shots, fps, p, frame_ms, None, first_index), p)


def plan_hybrid(
    duration_ms: int, source_fps: float, p: PlanParams, findings: Findings, h: HybridParams, *, first_index: int = 0
) -> Iterator[SegmentPlan]:
    """Shots merged up to ``min_seconds`` and split at ``max_seconds``, each within the frame limits."""
    if not 0 <= h.min_seconds < h.max_seconds:
        raise PlanError(
            f"hybrid min_seconds ({h.min_seconds}) must be ≥ 0 and below max_seconds ({h.max_seconds})",
            field="min_seconds",
        )
    start, end, fps = _job_range(duration_ms, source_fps, p)
    frame_ms = _frame_ms(source_fps)
    min_ms = max(h.min_seconds * 1000, p.min_frames * frame_ms)
    shots = merge_short(scenes(start, end, findings.cuts_ms), min_ms)
    yield from _budgeted(_described(shots, fps, p, frame_ms, h.max_seconds * 1000, first_index), p)


def plan_motion(
    duration_ms: int, source_fps: float, p: PlanParams, findings: Findings, h: HybridParams, *, first_index: int = 0
) -> Iterator[SegmentPlan]:
    """Activity events become described segments (split at ``max_seconds``); the quiet spans between
    them become ``static`` plans with no targets. Video past ``findings.until_ms`` (analysis stopped
    early) is described, never assumed quiet."""
    start, end, fps = _job_range(duration_ms, source_fps, p)
    frame_ms = _frame_ms(source_fps)
    events = [(max(s, start), min(e, end)) for s, e in findings.events if e > start and s < end]
    until = max(start, min(end, findings.until_ms))
    if until < end:
        events.append((until, end))
    return _budgeted(_motion_plans(start, end, fps, p, frame_ms, events, h, first_index), p)


def _motion_plans(start: int, end: int, fps: Fraction, p: PlanParams, frame_ms: float, events: list[Span],
                  h: HybridParams, index: int) -> Iterator[SegmentPlan]:  # fmt: skip
    pos = start
    for s, e in _widened(sorted(events), start, end, p.min_frames * frame_ms):
        if s > pos:
            yield SegmentPlan(index, pos, s, fps, (), kind="static")
            index += 1
        for ps, pe, pfps, targets in pieces(s, e, fps, p, frame_ms, h.max_seconds * 1000):
            yield SegmentPlan(index, ps, pe, pfps, targets)
            index += 1
        pos = max(pos, e)
    if pos < end:
        yield SegmentPlan(index, pos, end, fps, (), kind="static")


def _widened(events: Iterable[Span], start: int, end: int, need_ms: float) -> Iterator[Span]:
    """Merge events closer than ``need_ms`` and widen any too short to hold ``need_ms`` of video (forwards first)."""
    merged: list[Span] = []
    for s, e in events:
        if merged and s - merged[-1][1] < need_ms:  # too little room between them for a segment
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    floor = start
    for i, (s, e) in enumerate(merged):
        if e - s < need_ms:
            ceiling = merged[i + 1][0] if i + 1 < len(merged) else end
            e = min(ceiling, s + math.ceil(need_ms))
            s = max(floor, e - math.ceil(need_ms))
        yield s, e
        floor = e


def build_plans(
    segmenter: str,
    duration_ms: int,
    source_fps: float,
    p: PlanParams,
    findings: Findings | None,
    h: HybridParams,
) -> Iterator[SegmentPlan]:
    """Dispatch on the segmenter; ``fixed`` (or no findings) is the fixed-length planner."""
    if segmenter not in SEGMENTERS:
        raise PlanError(f"unknown segmenter '{segmenter}'; choose one of {', '.join(SEGMENTERS)}", field="segmenter")
    if segmenter == "fixed" or findings is None:
        return plan_segments(duration_ms, source_fps, p)
    if segmenter == "scene":
        return plan_scene(duration_ms, source_fps, p, findings)
    if segmenter == "motion":
        return plan_motion(duration_ms, source_fps, p, findings, h)
    return plan_hybrid(duration_ms, source_fps, p, findings, h)
