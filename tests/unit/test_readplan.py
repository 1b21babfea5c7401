"""The read-plan cost model: keyframe spacing vs sampling spacing -> backend and strategy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.core.readplan import (
    BACKEND_STRATEGIES,
    Costs,
    Strategy,
    StreamFacts,
    choose,
    exact_key_cover,
    expected_costs,
    interval_ms,
    median_interval,
    plan_for,
    seek_gap_ms,
    tolerance_ms,
)

H264_GOP30 = StreamFacts(fps=30, keyframe_interval_ms=1000, nonref_fraction=0.4)
H264_GOP250 = StreamFacts(fps=30, keyframe_interval_ms=250 / 30 * 1000, nonref_fraction=0.4)
MPEG4_GOP12 = StreamFacts(fps=25, keyframe_interval_ms=480, nonref_fraction=0.0)


def test_spacing_of_targets() -> None:
    assert interval_ms([0, 1000, 2000, 3500]) == 1000
    assert interval_ms([5]) is None and interval_ms([]) is None
    assert median_interval([8333, 0, 16667]) == pytest.approx(8333.5)
    assert median_interval([0]) is None


def test_tolerance_is_a_fraction_of_the_spacing_capped_at_half() -> None:
    targets = list(range(0, 10_000, 1000))
    assert tolerance_ms(targets, 0.5) == 500
    assert tolerance_ms(targets, 0.25) == 250
    assert tolerance_ms(targets, 0.9) == 500, "more than half would let one keyframe serve two targets"
    assert tolerance_ms(targets, 0.0) == 0
    assert tolerance_ms([1000], 0.5) == 0, "a single target has no spacing: exact frame"


def test_keyframes_win_when_they_are_closer_than_the_sampling_interval() -> None:
    plan = choose(H264_GOP30, 1000, tol_ms=500)
    assert (plan.backend, plan.strategy, plan.tolerance_ms) == ("pyav", Strategy.KEYFRAMES, 500)
    assert "keyframes every 1000 ms" in plan.reason


def test_no_tolerance_means_no_keyframe_stand_ins() -> None:
    plan = choose(H264_GOP30, 1000, tol_ms=0)
    assert plan.strategy is not Strategy.KEYFRAMES and plan.tolerance_ms == 0


def test_exact_key_cover_counts_targets_whose_exact_frame_is_a_keyframe() -> None:
    frame = 1000 / 30
    aligned = [0.0, 1000.0, 2000.0, 3000.0]
    assert exact_key_cover([0, 1000, 2000, 3000], aligned, frame) == 1.0
    assert exact_key_cover([0, 1000, 2000, 3000], [0.0, 1001.0, 2016.7, 3020.0], frame) == 0.5
    assert exact_key_cover([500, 1500], aligned, frame) == 0.0, "a keyframe before the target is not its frame"
    assert exact_key_cover([1000], [999.2], frame) == 1.0, "1 ms of rounding, as the readers allow"
    assert exact_key_cover([0, 1000], [], frame) == 0.0 and exact_key_cover([], aligned, frame) == 0.0


def test_keyframes_on_every_target_win_with_no_tolerance() -> None:
    plan = choose(H264_GOP30, 1000, tol_ms=0, exact_cover=1.0)
    assert (plan.backend, plan.strategy, plan.tolerance_ms) == ("pyav", Strategy.KEYFRAMES, 0)
    assert "100% of targets on keyframes" in plan.reason
    few = choose(H264_GOP250, 1000, tol_ms=0, exact_cover=0.12)
    assert few.strategy is not Strategy.KEYFRAMES, "one target in eight on a keyframe: decode the intervals"


def test_long_gop_at_one_fps_decodes_almost_everything() -> None:
    plan = choose(H264_GOP250, 1000, tol_ms=500)
    costs = dict(plan.expected)
    assert plan.strategy in (Strategy.SEQUENTIAL, Strategy.SKIP)
    assert costs["pyav/keyframes"] > costs[f"pyav/{plan.strategy}"], "few targets have a keyframe within 0.5 s"


def test_droppable_frames_make_pyav_cheaper_than_opencv_for_h264_only() -> None:
    assert choose(H264_GOP250, 100).backend == "pyav"
    plain = choose(MPEG4_GOP12, 40)
    assert (plain.backend, plain.strategy) == ("opencv", Strategy.SEQUENTIAL)


def test_sparse_sampling_avoids_decoding_every_frame() -> None:
    for facts in (H264_GOP30, H264_GOP250):
        plan = choose(facts, 5000)
        costs = dict(plan.expected)
        assert plan.strategy in (Strategy.SKIP, Strategy.SEEK)
        assert costs[f"{plan.backend}/{plan.strategy}"] <= costs["pyav/sequential"]
        assert costs[f"{plan.backend}/{plan.strategy}"] <= costs["opencv/sequential"]


def test_very_sparse_sampling_seeks_rather_than_demuxing_everything() -> None:
    plan = choose(H264_GOP30, 300_000)
    assert plan.strategy in (Strategy.SKIP, Strategy.SEEK)
    assert plan.seek_gap_ms < 300_000, "a gap of five minutes is jumped over, not demuxed"
    costs = dict(plan.expected)
    assert costs[f"pyav/{plan.strategy}"] < costs["pyav/sequential"] / 100


def test_opencv_alone_only_reads_or_seeks() -> None:
    for spacing in (100, 1000, 5000, 60_000):
        plan = choose(H264_GOP30, spacing, tol_ms=spacing // 2, backends=("opencv",))
        assert plan.backend == "opencv" and plan.strategy in BACKEND_STRATEGIES["opencv"]


def test_opencv_seek_pays_about_a_whole_interval() -> None:
    """OpenCV backs up 16 frames and so usually restarts one keyframe early (shared/facts.md)."""
    cv = expected_costs(H264_GOP30, 5000, 0, "opencv")[Strategy.SEEK]
    av = expected_costs(H264_GOP30, 5000, 0, "pyav")[Strategy.SEEK]
    assert cv > av and cv >= 30


def test_unknown_keyframe_spacing_reads_sequentially() -> None:
    facts = StreamFacts(fps=30, keyframe_interval_ms=None)
    assert set(expected_costs(facts, 5000, 2500, "pyav")) == {Strategy.SEQUENTIAL}
    assert choose(facts, 5000, 2500).strategy is Strategy.SEQUENTIAL


def test_forced_strategy_picks_a_backend_that_has_it() -> None:
    plan = plan_for(H264_GOP30, [0, 1000, 2000], 500, backends=("opencv", "pyav"), strategy=Strategy.KEYFRAMES)
    assert (plan.backend, plan.tolerance_ms, plan.reason) == ("pyav", 500, "keyframes forced")
    with pytest.raises(ValueError, match="no backend"):
        plan_for(H264_GOP30, [0, 1000], 0, backends=("opencv",), strategy=Strategy.SKIP)


def test_seek_gap() -> None:
    assert seek_gap_ms(H264_GOP250, Strategy.SEEK) == pytest.approx(8333.3, abs=1)
    # skipping by demuxing is cheap: jump only when demuxing the gap costs more than a seek
    costs = Costs()
    assert seek_gap_ms(H264_GOP30, Strategy.SKIP) == pytest.approx(costs.seek / costs.demux * 1000 / 30)
    assert seek_gap_ms(H264_GOP250, Strategy.SEQUENTIAL) >= 2 * 8333


@given(
    fps=st.floats(1, 120),
    gop_frames=st.integers(1, 600),
    spacing_frames=st.floats(0.5, 5000),
    tol_fraction=st.sampled_from([0.0, 0.1, 0.25, 0.5]),
    nonref=st.floats(0, 0.7),
)
def test_the_plan_is_the_cheapest_candidate(
    fps: float, gop_frames: int, spacing_frames: float, tol_fraction: float, nonref: float
) -> None:
    facts = StreamFacts(fps=fps, keyframe_interval_ms=gop_frames * 1000 / fps, nonref_fraction=nonref)
    spacing = spacing_frames * 1000 / fps
    tol = int(spacing * tol_fraction)
    plan = choose(facts, spacing, tol)
    costs = [c for _, c in plan.expected]
    assert costs == sorted(costs) and plan.expected[0][0] == f"{plan.backend}/{plan.strategy}"
    every = {(b, s): c for b in ("pyav", "opencv") for s, c in expected_costs(facts, spacing, tol, b).items()}
    assert min(every.values()) == pytest.approx(costs[0], abs=0.01)
    assert plan.strategy in BACKEND_STRATEGIES[plan.backend]
    assert plan.tolerance_ms == (tol if plan.strategy is Strategy.KEYFRAMES else 0)
