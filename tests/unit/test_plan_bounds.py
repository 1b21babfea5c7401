"""Every planner ends and stays within the job caps, whatever the knobs (issue 14, items 2-3)."""

from __future__ import annotations

import itertools
import time

import pytest

from worker.core.segmenters import Findings, plan_scene
from worker.core.segments import MIN_STEP_MS, PlanParams, plan_segments, step_ms
from worker.errors import PlanError

SEGMENTS = [0.0001, 0.1, 0.5, 1, 1.0004, 2, 10, 3600]
OVERLAPS = [0, 0.0004, 0.4, 0.9, 0.95, 0.9996, 0.999999, 1, 1.9, 3599.99]


@pytest.mark.parametrize("segment", SEGMENTS)
def test_fixed_planner_ends_within_the_caps_for_every_overlap(segment: float) -> None:
    for overlap, fps in itertools.product(OVERLAPS, (1, 4, 30)):
        p = PlanParams(fps=fps, segment_seconds=segment, overlap_seconds=overlap, min_frames=1, max_frames=10_000,
                       max_frames_per_job=500, max_segments_per_job=50)  # fmt: skip
        started = time.monotonic()
        try:
            plans = list(plan_segments(60_000, 25.0, p))
        except PlanError:
            continue
        finally:
            assert time.monotonic() - started < 2, (segment, overlap, fps)
        assert len(plans) <= 50 and sum(pl.frame_count for pl in plans) <= 500
        starts = [pl.start_ms for pl in plans]
        assert all(b - a >= MIN_STEP_MS for a, b in itertools.pairwise(starts)), "segments advance"


def test_step_is_checked_in_integer_milliseconds() -> None:
    with pytest.raises(PlanError, match="overlap_seconds"):
        step_ms(1, 0.9996)  # float check passes (0.9996 < 1), the integer step would be 0
    assert step_ms(1, 0.9) == 100


def test_scene_planner_stops_at_the_segment_cap() -> None:
    cuts = tuple(range(1000, 600_000, 1000))  # a cut every second: 600 shots
    findings = Findings(0, 600_000, cuts, (), 0)
    p = PlanParams(fps=4, segment_seconds=10, min_frames=1, max_frames=100, max_segments_per_job=20)
    with pytest.raises(PlanError, match="segments"):
        list(plan_scene(600_000, 25.0, p, findings))
