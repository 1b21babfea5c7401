"""Timestamp truth: model times -> absolute video ms from the segment's real frame times, clamped, flagged."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.core.timestamps import (
    OUT_OF_RANGE,
    UNREADABLE,
    SegmentClock,
    clip_to_video_ms,
    parse_time,
    resolve,
    resolve_spans,
)

# A 25 fps video sampled at 2 fps from 4 s to 8 s: x.5 s has no frame, the next one is 20 ms later.
REAL = SegmentClock(4000, 8000, (4000, 4520, 5000, 5520, 6000, 6520, 7000, 7520), 2.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, (3.0, False)),
        (2.5, (2.5, False)),
        ("2.5", (2.5, False)),
        ("4s", (4.0, False)),
        (" 7 seconds ", (7.0, False)),
        ("00:05", (5.0, True)),
        ("1:05", (65.0, True)),
        ("01:02:03.5", (3723.5, True)),
        ("abc", None),
        ("1:75", None),
        ("", None),
        (True, None),
        (None, None),
        (float("inf"), None),
        ([1], None),
    ],
)
def test_parse_time(value: object, expected: tuple[float, bool] | None) -> None:
    assert parse_time(value) == expected


def test_clip_time_maps_through_the_real_frame_times() -> None:
    assert clip_to_video_ms(0, REAL) == 4000
    assert clip_to_video_ms(0.5, REAL) == 4520  # frame 1's true PTS, not 4500
    assert clip_to_video_ms(0.25, REAL) == 4260  # halfway between frames 0 and 1
    assert clip_to_video_ms(3.5, REAL) == 7520  # the last frame
    assert clip_to_video_ms(4.0, REAL) == 8020  # past the last frame: one sampling step per 1/fps


def test_resolve_inside_the_segment() -> None:
    r = resolve(0.5, REAL)
    assert (r.ms, r.out_of_range, r.absolute) == (4520, False, False)
    assert resolve("00:01", REAL).ms == 5000  # a clip clock: 1 s in


def test_resolve_clamps_and_flags_outside() -> None:
    late = resolve(30, REAL)
    assert (late.ms, late.out_of_range) == (8000, True)
    early = resolve(-2, REAL)
    assert (early.ms, early.out_of_range) == (4000, True)
    assert resolve("nonsense", REAL).ms is None


def test_end_of_clip_is_not_out_of_range() -> None:
    ten = SegmentClock(0, 10_000, tuple(range(0, 10_000, 1000)), 1.0)
    r = resolve(10, ten)
    assert (r.ms, r.out_of_range) == (10_000, False)


def test_video_clock_inside_the_segment_is_taken_as_absolute() -> None:
    r = resolve("00:06", REAL)  # 6 s is past the 4 s clip, but inside 4-8 s of the video
    assert (r.ms, r.out_of_range, r.absolute) == (6000, False, True)
    r = resolve(6, REAL)  # a bare number stays clip time: 6 s into a 4 s clip is outside
    assert (r.ms, r.out_of_range, r.absolute) == (8000, True, False)


def test_resolve_spans_adds_ms_swaps_and_flags() -> None:
    items = [
        {"start": 0.5, "end": 1, "what": "a"},
        {"start": 3, "end": 1, "what": "reversed"},
        {"start": 2, "end": 99, "what": "runs past the end"},
        {"start": "soon", "what": "unreadable"},
    ]
    out, flags = resolve_spans(items, REAL)
    assert [(i["start_ms"], i["end_ms"]) for i in out] == [(4520, 5000), (5000, 7000), (6000, 8000), (None, None)]
    assert out[0].get("flags") is None and out[1].get("flags") is None
    assert out[2]["flags"] == [OUT_OF_RANGE]
    assert out[3]["flags"] == [UNREADABLE]
    assert flags == (OUT_OF_RANGE, UNREADABLE)
    assert items[0] == {"start": 0.5, "end": 1, "what": "a"}  # inputs are not modified


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_any_time_lands_inside_the_segment(seconds: float) -> None:
    r = resolve(seconds, REAL)
    assert r.ms is not None and REAL.start_ms <= r.ms <= REAL.end_ms
    if 0 <= seconds <= 4.0:  # inside the 4 s clip
        assert not r.out_of_range
    if seconds < -0.25 or seconds > 4.3:  # beyond half a frame (0.25 s at 2 fps) of slack
        assert r.out_of_range


def test_a_span_with_mixed_clock_forms_is_flagged() -> None:
    """Issue 15: start "00:07" read as clip time, end "00:12" as video time — flagged, not silent."""
    from worker.core.timestamps import MIXED_CLOCK, SegmentClock, resolve_spans

    clock = SegmentClock(10_000, 20_000, tuple(range(10_000, 20_000, 1000)), 1.0)
    items, flags = resolve_spans([{"start": "00:07", "end": "00:15"}], clock)
    assert MIXED_CLOCK in flags and MIXED_CLOCK in items[0]["flags"]
    same, none = resolve_spans([{"start": "00:02", "end": "00:05"}], clock)
    assert MIXED_CLOCK not in none and "flags" not in same[0]
