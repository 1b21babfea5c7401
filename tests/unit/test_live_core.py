"""Pure parts of live ingest: wall clock from PTS, UTC-aligned windows, motion gating, pre-event buffer,
alert rules, duration parsing and the live-source SSRF rules."""

from __future__ import annotations

import numpy as np
import pytest

from worker.errors import InputError, SourceError
from worker.live.cutter import Cutter, LiveFrame, WallClock, motion_score
from worker.live.options import WatchOptions, check_name, parse_duration
from worker.live.rules import parse_rule
from worker.live.source import check_live

T0 = 1_800_000_000_000  # a UTC instant on a 10 s boundary


def frames(start: int, end: int, step: int, motion: float = 0.0) -> list[LiveFrame]:
    return [LiveFrame(t, t - start, None, motion) for t in range(start, end, step)]


def feed(cutter: Cutter, items: list[LiveFrame]) -> list:
    out = []
    for f in items:
        if cutter.wants(f.utc_ms):
            out.extend(cutter.push(f))
    return out


def test_wall_clock_follows_pts_and_reanchors_on_a_jump() -> None:
    clock = WallClock(drift_ms=2000)
    assert clock.utc_ms(0, T0) == T0
    assert clock.utc_ms(500, T0 + 650) == T0 + 500  # receipt jitter does not move frame times
    assert clock.utc_ms(90_000, T0 + 1000) == T0 + 1000  # a PTS jump: re-anchored on receipt
    clock.reset()
    t = clock.utc_ms(0, T0 + 900)  # a new connection restarting PTS at 0 never goes back in time
    assert t == T0 + 1001


def test_windows_align_to_utc_boundaries_and_the_short_first_one_joins_the_next() -> None:
    cutter = Cutter(2000, 500, motion=False, threshold=0.01, pre_event_ms=0)
    windows = feed(cutter, frames(T0 + 1700, T0 + 8000, 100))
    assert [(w.start_utc_ms - T0, w.end_utc_ms - T0) for w in windows] == [(1700, 4000), (4000, 6000)]
    assert all(len(w.frames) == 4 for w in windows[1:])
    rest = cutter.flush()
    assert rest is not None and rest.complete is False
    assert (rest.start_utc_ms - T0, rest.end_utc_ms - T0) == (6000, 8000)


def test_a_gap_is_never_covered_by_a_window() -> None:
    cutter = Cutter(2000, 500, motion=False, threshold=0.01, pre_event_ms=0)
    before = feed(cutter, frames(T0, T0 + 3000, 100))
    cut = cutter.flush()  # the camera dropped at +3.0 s
    after = feed(cutter, frames(T0 + 7300, T0 + 10_600, 100))
    spans = [(w.start_utc_ms - T0, w.end_utc_ms - T0) for w in [*before, cut, *after]]
    assert spans == [(0, 2000), (2000, 3000), (7300, 10_000)]
    assert all(not (s < 7300 and e > 3000) for s, e in spans)


def test_motion_gating_marks_quiet_windows_static_and_prepends_the_pre_event_buffer() -> None:
    cutter = Cutter(2000, 500, motion=True, threshold=0.01, pre_event_ms=1000)
    quiet = feed(cutter, frames(T0, T0 + 4000, 500))
    busy = feed(cutter, frames(T0 + 4000, T0 + 6500, 500, motion=0.2))
    assert [w.static for w in quiet] == [True]
    assert busy[0].static is True  # the quiet window 2-4 s closes when motion starts at 4 s
    assert busy[1].static is False
    pre = [f.utc_ms - T0 for f in busy[1].pre_event]
    assert pre == [3000, 3500] and busy[1].described_start_ms == T0 + 3000


def test_motion_score_counts_changed_pixels() -> None:
    a = np.zeros((48, 64), np.uint8)
    b = a.copy()
    b[:24, :32] = 200
    assert motion_score(None, a) == 0.0
    assert motion_score(a, a) == 0.0
    assert motion_score(a, b) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("rule", "structured", "text", "expected"),
    [
        ("threat_level>=2", {"threat_level": 2}, "", True),
        ("threat_level>=2", {"threat_level": 1}, "", False),
        ("threat>=2", {"potential_threat_level": 3}, "", True),
        ("people>=2 and vehicles==0", {"people": ["a", "b"], "vehicles": []}, "", True),
        ("people>=2 and vehicles==0", {"people": ["a", "b"], "vehicles": ["car"]}, "", False),
        ("keyword:knife or concerns>0", {"concerns": []}, "A man holds a KNIFE", True),
        ("not (people>0)", {"people": []}, "", True),
        ("activity~loiter", {"activity": "Loitering near the gate"}, "", True),
        ("activity=='idle'", {"activity": "IDLE"}, "", True),
    ],
)
def test_alert_rules(rule: str, structured: dict, text: str, expected: bool) -> None:
    assert parse_rule(rule).matches(text, structured) is expected


@pytest.mark.parametrize("bad", ["", "threat_level>>2", "people >=", "(people>1", "a" * 600, "(" * 40 + "x>1"])
def test_bad_rules_are_one_line_input_errors(bad: str) -> None:
    with pytest.raises(InputError) as err:
        parse_rule(bad)
    assert "\n" not in err.value.message


def test_durations_names_and_options() -> None:
    assert parse_duration("1h") == 3600 and parse_duration("90s") == 90 and parse_duration("15m") == 900
    with pytest.raises(InputError):
        parse_duration("soon")
    with pytest.raises(InputError):
        check_name("../etc")
    opts = WatchOptions.parse({"segment_seconds": 2, "fps": 1, "alert": ["threat_level>=2"]})
    assert opts.sample_fps == 2.0  # at least 4 frames per segment
    with pytest.raises(InputError):
        WatchOptions.parse({"alert": ["threat_level>"]})


def test_live_sources_follow_the_ssrf_rules() -> None:
    with pytest.raises(SourceError, match="loopback"):
        check_live("rtsp://127.0.0.1:8554/cam")
    assert check_live("rtsp://127.0.0.1:8554/cam", ["127.0.0.1"]).kind == "rtsp"
    assert check_live("http://127.0.0.1:80/live.m3u8", ["127.0.0.0/8"]).kind == "hls"
    with pytest.raises(SourceError, match="m3u8"):
        check_live("http://127.0.0.1/video.mp4", ["127.0.0.1"])
    with pytest.raises(SourceError, match="rtsp"):
        check_live("file:///etc/passwd")
    with pytest.raises(SourceError):
        check_live("/etc/passwd")
    with pytest.raises(SourceError, match=r"metadata|link-local"):
        check_live("rtsp://169.254.169.254/cam")
    src = check_live("rtsp://user:secret@127.0.0.1:8554/cam", ["127.0.0.1"])
    assert "secret" not in src.redacted


def test_sampling_keeps_a_true_rate_on_a_utc_grid() -> None:
    cutter = Cutter(10_000, 1000, motion=False, threshold=0.01, pre_event_ms=0)
    src = [LiveFrame(T0 + 37 + i * 100 + (i % 3) * 7, 0, None) for i in range(250)]  # 10 fps with jitter
    windows = feed(cutter, src)
    assert [len(w.frames) for w in windows[1:]] == [10]
    gaps = [b.utc_ms - a.utc_ms for a, b in zip(windows[1].frames, windows[1].frames[1:], strict=False)]
    assert all(900 <= g <= 1100 for g in gaps)
