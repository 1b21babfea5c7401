"""Scene, motion and hybrid planners: cuts respected, events covered, frame limits and true fps kept."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.core.models import SegmentPlan
from worker.core.sampling import sample_times
from worker.core.segmenters import (
    Findings,
    HybridParams,
    MotionParams,
    Sample,
    build_plans,
    collect,
    count_times,
    merge_short,
    pieces,
    plan_hybrid,
    plan_motion,
    plan_scene,
    scenes,
)
from worker.core.segments import PlanParams, plan_segments
from worker.errors import PlanError

SOURCE_FPS = 25.0


def found(cuts: tuple[int, ...] = (), events: tuple[tuple[int, int], ...] = (), until: int = 10**9) -> Findings:
    return Findings(0, until, cuts, events, 0)


def assert_well_formed(plans: list[SegmentPlan], start: int, end: int, p: PlanParams) -> None:
    """Contiguous cover of [start, end); described plans hold min..max targets = sample_times at their fps."""
    assert [pl.index for pl in plans] == list(range(len(plans)))
    assert plans[0].start_ms == start and plans[-1].end_ms == end
    for a, b in itertools.pairwise(plans):
        assert a.end_ms == b.start_ms, "no gap, no overlap"
    for pl in plans:
        assert pl.start_ms < pl.end_ms
        if pl.kind == "static":
            assert pl.targets_ms == ()
            continue
        assert p.min_frames <= pl.frame_count <= p.max_frames
        assert pl.targets_ms == tuple(sample_times(pl.start_ms, pl.end_ms, pl.fps)), "reproducible from the row"
        assert pl.start_ms <= pl.targets_ms[0] and pl.targets_ms[-1] < pl.end_ms
        gaps = {b - a for a, b in itertools.pairwise(pl.targets_ms)}
        assert max(gaps) - min(gaps) <= 1, "targets evenly spaced: the fps sent is their true rate"
        assert abs(1000 / pl.fps - min(gaps)) <= 1


def spans_cut(pl: SegmentPlan, cuts: tuple[int, ...]) -> bool:
    return any(pl.start_ms < c < pl.end_ms for c in cuts)


# -- the analysis fold ----------------------------------------------------------------------------
def stream(
    seconds: float, fps: float, active: list[tuple[float, float]], cuts: dict[int, tuple[int, ...]] | None = None
):
    for k in range(round(seconds * fps)):
        t = round(k * 1000 / fps)
        on = any(s * 1000 <= t < e * 1000 for s, e in active)
        yield Sample(t, 0.05 if on else 0.0, (cuts or {}).get(k, ()))


def test_collect_pads_and_merges_events() -> None:
    m = MotionParams(threshold=0.01, min_event_s=0.5, pad_s=1.0, merge_gap_s=2.0)
    got = collect(stream(60, 10, [(10, 12), (13, 14), (30, 30.2), (40, 41)]), m, 0, 60_000)
    # 10-12 and 13-14 merge (1 s of quiet < 2 s), 30-30.2 is too short, 40-41 stands alone.
    assert got.events == ((9_000, 15_000), (39_000, 42_000))
    assert got.samples == 600 and got.until_ms == 60_000


def test_collect_merges_events_whose_padding_comes_close() -> None:
    m = MotionParams(threshold=0.01, min_event_s=0.5, pad_s=1.0, merge_gap_s=2.0)
    got = collect(stream(30, 10, [(10, 11), (14, 15)]), m, 0, 30_000)
    assert got.events == ((9_000, 16_000),)  # padded: 9-12 and 13-16, 1 s apart < merge gap


def test_collect_clips_padding_to_the_range_and_keeps_cuts_inside() -> None:
    m = MotionParams(threshold=0.01, min_event_s=0.0, pad_s=2.0, merge_gap_s=0.5)
    cuts = {0: (0,), 50: (5_000,), 51: (5_000,), 80: (7_960,)}
    got = collect(stream(10, 10, [(0, 1), (9, 10)], cuts), m, 0, 10_000)
    assert got.events == ((0, 3_000), (7_000, 10_000))
    assert got.cuts_ms == (5_000, 7_960), "the start is no cut; a cut reported twice counts once"


def test_collect_of_a_quiet_or_empty_stream() -> None:
    m = MotionParams()
    assert collect(stream(5, 10, []), m, 0, 5_000).events == ()
    empty = collect(iter(()), m, 1_000, 5_000)
    assert (empty.events, empty.cuts_ms, empty.until_ms, empty.samples) == ((), (), 1_000, 0)


def test_collect_stops_where_the_stream_stops() -> None:
    got = collect(stream(4, 10, [(3.5, 4)]), MotionParams(min_event_s=0, pad_s=0), 0, 10_000)
    assert got.until_ms == 4_000 and got.events == ((3_500, 4_000),)


# -- building blocks ------------------------------------------------------------------------------
@settings(deadline=None)
@given(start=st.integers(0, 10**6), length=st.integers(0, 10**5), fps=st.sampled_from([0.25, 1, 2, 29.97, 1 / 3]))
def test_count_times_matches_sample_times(start: int, length: int, fps: float) -> None:
    f = Fraction(fps).limit_denominator(1_000_000)
    assert count_times(start, start + length, f) == len(list(sample_times(start, start + length, f)))


def test_scenes_and_merge_short() -> None:
    assert scenes(0, 10, [5, 0, 10, 12, 3]) == [(0, 3), (3, 5), (5, 10)]
    assert merge_short([(0, 10), (10, 11), (11, 30)], 2) == [(0, 11), (11, 30)]
    assert merge_short([(0, 1), (1, 20), (20, 21)], 2) == [(0, 21)]
    assert merge_short([(0, 1)], 2) == [(0, 1)]


def test_pieces_resample_short_spans_at_their_true_rate() -> None:
    p = PlanParams(fps=1, segment_seconds=10)
    ((s, e, fps, targets),) = pieces(1_000, 3_000, Fraction(1), p, 40.0)
    assert (s, e, len(targets)) == (1_000, 3_000, 4) and fps == Fraction(2)
    assert pieces(1_000, 1_100, Fraction(1), p, 40.0) == [], "fewer than 4 video frames: cannot be described"


def test_pieces_split_long_spans_within_the_frame_limit() -> None:
    p = PlanParams(fps=2, segment_seconds=10, max_frames=16)
    parts = pieces(0, 60_000, Fraction(2), p, 40.0)
    assert all(4 <= len(t) <= 16 for *_, t in parts)
    assert sum(len(t) for *_, t in parts) == 120 and len(parts) == 8
    assert [s for s, *_ in parts][1:] == [e for _, e, *_ in parts][:-1]
    capped = pieces(0, 60_000, Fraction(2), PlanParams(fps=2, segment_seconds=10), 40.0, max_ms=25_000)
    assert len(capped) == 3 and all(e - s <= 25_000 for s, e, *_ in capped)


# -- scene ---------------------------------------------------------------------------------------
cut_lists = st.lists(st.integers(1, 119_999), max_size=12).map(lambda xs: tuple(sorted(set(xs))))


@settings(max_examples=200, deadline=None)
@given(cuts=cut_lists, fps=st.sampled_from([0.5, 1.0, 2.0, 5.0]))
def test_scene_never_spans_a_cut_between_long_enough_shots(cuts: tuple[int, ...], fps: float) -> None:
    p = PlanParams(fps=fps, segment_seconds=10)
    plans = list(plan_scene(120_000, SOURCE_FPS, p, found(cuts)))
    assert_well_formed(plans, 0, 120_000, p)
    shots = scenes(0, 120_000, cuts)
    for pl in plans:
        if spans_cut(pl, cuts):  # allowed only for a shot too short for 4 video frames (160 ms)
            inside = [sh for sh in shots if pl.start_ms <= sh[0] and sh[1] <= pl.end_ms]
            assert any(e - s < 160 for s, e in inside), (pl, cuts)
    assert all(pl.kind == "describe" for pl in plans)


def test_scene_follows_shots_exactly() -> None:
    p = PlanParams(fps=1, segment_seconds=10)
    plans = list(plan_scene(30_000, SOURCE_FPS, p, found((3_000, 7_400, 12_000))))
    assert [(pl.start_ms, pl.end_ms) for pl in plans] == [(0, 3_000), (3_000, 7_400), (7_400, 12_000), (12_000, 30_000)]
    assert plans[0].fps == Fraction(4, 3) and plans[1].fps == Fraction(1), "short shot re-sampled, true fps"


def test_scene_splits_a_shot_above_the_frame_limit() -> None:
    p = PlanParams(fps=2, segment_seconds=10, max_frames=100)
    plans = list(plan_scene(600_000, SOURCE_FPS, p, found()))
    assert_well_formed(plans, 0, 600_000, p)
    assert len(plans) == 13 and all(pl.fps == 2 for pl in plans)


# -- hybrid --------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    cuts=cut_lists,
    fps=st.sampled_from([0.5, 1.0, 2.0]),
    min_s=st.sampled_from([0.0, 1.0, 2.0, 5.0]),
    max_s=st.sampled_from([8.0, 15.0, 30.0]),
    start_s=st.sampled_from([None, 0.0, 7.5]),
)
def test_hybrid_invariants(
    cuts: tuple[int, ...], fps: float, min_s: float, max_s: float, start_s: float | None
) -> None:
    p = PlanParams(fps=fps, segment_seconds=10, start_s=start_s)
    h = HybridParams(min_s, max_s)
    plans = list(plan_hybrid(120_000, SOURCE_FPS, p, found(cuts), h))
    start = round((start_s or 0) * 1000)
    assert_well_formed(plans, start, 120_000, p)
    shots = scenes(start, 120_000, cuts)
    short = max(min_s * 1000, 160)
    for pl in plans:
        # longer than max_seconds only when halves would hold fewer than 4 frames each
        assert pl.end_ms - pl.start_ms <= max_s * 1000 + 1000 / fps + 1 or pl.frame_count < 2 * p.min_frames
        if spans_cut(pl, cuts):  # only merged short shots may make a segment span a cut
            inside = [sh for sh in shots if pl.start_ms <= sh[0] and sh[1] <= pl.end_ms]
            assert any(e - s < short for s, e in inside), (pl, cuts)
    merged = merge_short(shots, short)
    assert all(e - s >= short for s, e in merged) or len(merged) == 1
    if min_s * 2 <= max_s and len(plans) > 1:  # splitting halves at most: parts stay near min_seconds
        assert min(pl.end_ms - pl.start_ms for pl in plans) >= min(short, max_s * 500) - 1000 / fps - 1


def test_hybrid_merges_short_and_splits_long_scenes() -> None:
    p = PlanParams(fps=1, segment_seconds=10)
    plans = list(plan_hybrid(100_000, SOURCE_FPS, p, found((10_000, 11_000, 40_000)), HybridParams(2, 20)))
    spans = [(pl.start_ms, pl.end_ms) for pl in plans]
    assert spans == [(0, 11_000), (11_000, 26_000), (26_000, 40_000), (40_000, 60_000), (60_000, 80_000),
                     (80_000, 100_000)]  # fmt: skip


def test_hybrid_refuses_min_above_max() -> None:
    with pytest.raises(PlanError, match="min_seconds"):
        list(plan_hybrid(60_000, SOURCE_FPS, PlanParams(fps=1, segment_seconds=10), found(), HybridParams(30, 20)))


def test_hybrid_respects_the_job_frame_budget() -> None:
    p = PlanParams(fps=2, segment_seconds=10, max_frames_per_job=100)
    with pytest.raises(PlanError, match="more than 100 frames"):
        list(plan_hybrid(120_000, SOURCE_FPS, p, found(), HybridParams()))


# -- motion --------------------------------------------------------------------------------------
events_strategy = st.lists(st.tuples(st.integers(0, 118_000), st.integers(100, 20_000)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(raw=events_strategy, fps=st.sampled_from([0.5, 1.0, 2.0]))
def test_motion_describes_every_event_and_nothing_else(raw: list[tuple[int, int]], fps: float) -> None:
    events = tuple(sorted((s, min(120_000, s + d)) for s, d in raw))
    p = PlanParams(fps=fps, segment_seconds=10)
    plans = list(plan_motion(120_000, SOURCE_FPS, p, found(events=events), HybridParams()))
    assert_well_formed(plans, 0, 120_000, p)
    described = [(pl.start_ms, pl.end_ms) for pl in plans if pl.kind == "describe"]
    for s, e in events:
        assert all(any(a <= t < b for a, b in described) for t in range(s, e, 50)), (s, e)
    for pl in plans:
        if pl.kind == "static":
            assert not any(s < pl.end_ms and pl.start_ms < e for s, e in events), "quiet spans hold no event"
    assert not any(a.kind == b.kind == "static" for a, b in itertools.pairwise(plans))


def test_motion_static_camera_plan() -> None:
    p = PlanParams(fps=1, segment_seconds=10)
    plans = list(plan_motion(60_000, SOURCE_FPS, p, found(events=((4_000, 7_533), (49_000, 52_000))), HybridParams()))
    assert [(pl.kind, pl.start_ms, pl.end_ms, pl.frame_count) for pl in plans] == [
        ("static", 0, 4_000, 0),
        ("describe", 4_000, 7_533, 4),
        ("static", 7_533, 49_000, 0),
        ("describe", 49_000, 52_000, 4),
        ("static", 52_000, 60_000, 0),
    ]
    assert plans[3].fps == Fraction(4, 3)


def test_motion_describes_what_was_not_analysed() -> None:
    p = PlanParams(fps=1, segment_seconds=10)
    plans = list(plan_motion(60_000, SOURCE_FPS, p, found(until=30_000), HybridParams(max_seconds=20)))
    assert [(pl.kind, pl.start_ms, pl.end_ms) for pl in plans] == [
        ("static", 0, 30_000),
        ("describe", 30_000, 45_000),
        ("describe", 45_000, 60_000),
    ]


def test_motion_widens_an_event_too_short_for_four_frames() -> None:
    p = PlanParams(fps=1, segment_seconds=10)
    plans = list(plan_motion(10_000, SOURCE_FPS, p, found(events=((5_000, 5_050),)), HybridParams()))
    described = [pl for pl in plans if pl.kind == "describe"]
    assert len(described) == 1 and described[0].start_ms == 5_000 and described[0].frame_count == 4
    assert_well_formed(plans, 0, 10_000, p)


# -- dispatch ------------------------------------------------------------------------------------
def test_build_plans_dispatch() -> None:
    p = PlanParams(fps=1, segment_seconds=10)
    fixed = list(plan_segments(60_000, SOURCE_FPS, p))
    assert list(build_plans("fixed", 60_000, SOURCE_FPS, p, found((5_000,)), HybridParams())) == fixed
    assert list(build_plans("hybrid", 60_000, SOURCE_FPS, p, None, HybridParams())) == fixed, "no analysis: fixed"
    assert len(list(build_plans("scene", 60_000, SOURCE_FPS, p, found((5_000,)), HybridParams()))) == 2
    with pytest.raises(PlanError, match="unknown segmenter"):
        build_plans("magic", 60_000, SOURCE_FPS, p, None, HybridParams())


def test_too_short_a_range_is_refused() -> None:
    with pytest.raises(PlanError, match="at least 4"):
        list(plan_scene(100, SOURCE_FPS, PlanParams(fps=1, segment_seconds=10), found()))
