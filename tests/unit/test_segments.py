"""Planner invariants: every segment has min..max frames, times increase and stay in range."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from worker.core.sampling import as_fraction, sample_times, spread
from worker.core.segments import PlanParams, plan_segments
from worker.errors import PlanError


@settings(max_examples=150, deadline=None)
@given(
    duration_ms=st.integers(min_value=200, max_value=4 * 3600 * 1000),
    source_fps=st.sampled_from([10.0, 24.0, 25.0, 29.97, 30.0, 60.0]),
    fps=st.sampled_from([0.5, 1.0, 2.0, 5.0]),
    seg=st.floats(min_value=1.0, max_value=120.0),
    overlap_frac=st.floats(min_value=0.0, max_value=0.9),
    start_frac=st.floats(min_value=0.0, max_value=0.5),
)
@example(duration_ms=10_002_000, source_fps=10.0, fps=2.0, seg=3.0, overlap_frac=0.75, start_frac=0.0)  # frame cap
@example(duration_ms=10_000_500, source_fps=10.0, fps=2.0, seg=2.5, overlap_frac=0.8, start_frac=0.0)  # segment cap
def test_planner_invariants(
    duration_ms: int, source_fps: float, fps: float, seg: float, overlap_frac: float, start_frac: float
) -> None:
    p = PlanParams(
        fps=fps, segment_seconds=seg, overlap_seconds=seg * overlap_frac, start_s=duration_ms * start_frac / 1000
    )
    try:
        plans = list(plan_segments(duration_ms, source_fps, p))
    except PlanError as exc:
        per_segment = math.floor(seg * fps)
        if "would sample" in exc.message or "would make" in exc.message:  # the job-wide frame / segment caps
            segments = duration_ms * (1 - start_frac) / 1000 / (seg * (1 - overlap_frac))
            assert segments * per_segment > p.max_frames_per_job / 2 or segments > p.max_segments_per_job / 2
            return
        frames = math.floor(duration_ms * (1 - start_frac) * source_fps / 1000)
        assert per_segment < 4 or per_segment > 512 or frames < 4 or round(duration_ms * start_frac) >= duration_ms
        return
    start = round(duration_ms * start_frac)
    assert plans, "a valid plan has at least one segment"
    assert [pl.index for pl in plans] == list(range(len(plans)))
    assert plans[0].start_ms == start or plans[0].start_ms < start + 1000
    covered_to = start
    for pl in plans:
        assert 4 <= pl.frame_count <= 512
        assert list(pl.targets_ms) == sorted(set(pl.targets_ms)), "times strictly increase"
        assert start <= pl.targets_ms[0] and pl.targets_ms[-1] < duration_ms
        assert pl.start_ms <= pl.targets_ms[0] and pl.targets_ms[-1] < pl.end_ms
        assert pl.start_ms <= covered_to, "no gap between segments"
        covered_to = max(covered_to, pl.end_ms)
    assert covered_to == duration_ms, "the range is covered to its end"
    if p.overlap_seconds and len(plans) > 2:
        a, b = plans[0], plans[1]
        assert a.end_ms - b.start_ms == pytest.approx(p.overlap_seconds * 1000, abs=1)


def test_short_tail_is_merged() -> None:
    plans = list(plan_segments(21_500, 25.0, PlanParams(fps=1.0, segment_seconds=10)))
    assert [(p.start_ms, p.end_ms, p.frame_count) for p in plans] == [(0, 10_000, 10), (10_000, 21_500, 12)]


def test_tail_resampled_when_merge_would_exceed_limit() -> None:
    plans = list(plan_segments(10_500, 25.0, PlanParams(fps=4.0, segment_seconds=10, max_frames=40)))
    tail = plans[-1]
    assert tail.frame_count == 4 and tail.end_ms == 10_500
    assert float(tail.fps) > 4.0  # its true, denser rate is what is sent


def test_whole_video_shorter_than_four_samples_is_resampled() -> None:
    (only,) = plan_segments(2_000, 30.0, PlanParams(fps=1.0, segment_seconds=10))
    assert only.frame_count == 4 and only.start_ms == 0 and only.end_ms == 2_000
    assert only.fps == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (PlanParams(fps=1.0, segment_seconds=1000), "segment_seconds"),
        (PlanParams(fps=0.1, segment_seconds=10), "segment_seconds"),
        (PlanParams(fps=1.0, segment_seconds=10, overlap_seconds=10), "overlap_seconds"),
        (PlanParams(fps=1.0, segment_seconds=10, start_s=100), "start"),
        (PlanParams(fps=1.0, segment_seconds=10, start_s=5, end_s=4), "end"),
        (PlanParams(fps=float("nan"), segment_seconds=10), "fps"),
    ],
)
def test_impossible_plans_name_the_field(params: PlanParams, field: str) -> None:
    with pytest.raises(PlanError) as exc:
        list(plan_segments(60_000, 25.0, params))
    assert exc.value.field == field
    assert exc.value.message


def test_too_few_video_frames() -> None:
    with pytest.raises(PlanError, match="only 1 video frame"):
        list(plan_segments(40, 25.0, PlanParams(fps=1.0, segment_seconds=10)))


def test_sample_times_exact_for_ntsc_rates() -> None:
    fps = as_fraction(29.97)
    times = list(sample_times(0, 10_000, fps))
    assert len(times) == 300 and times[1] == 33 and times[-1] == 9977


def test_spread_rate_matches_times() -> None:
    times, fps = spread(1000, 3000, 4)
    assert times == (1000, 1500, 2000, 2500) and fps == 2
    assert tuple(sample_times(1000, 3000, fps)) == times
