"""Timestamp truth: times a model reports inside a segment -> absolute video milliseconds.

The model sees a segment as a frame list played at ``fps``; "3.5 s into the clip" therefore means
frame position ``3.5 * fps``, whose real time is read (interpolated) from the frames' true PTS.
Numbers are seconds from the clip's first frame. Clock strings (``MM:SS``, ``HH:MM:SS``, with
optional ``.mmm``) are read the same way, unless they only make sense as video times: a clock
value outside the clip's length that falls inside the segment's span of the video is taken as
absolute (the prompt shows the model that span). Results are clamped to the segment; anything
outside it is flagged ``time_out_of_range``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OUT_OF_RANGE = "time_out_of_range"
UNREADABLE = "time_unreadable"
MIXED_CLOCK = "time_mixed_clock"  # one end read as a clip time, the other as a video time

_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")
_SECONDS = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*(?:s|sec|secs|seconds?)?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SegmentClock:
    """What maps model time to video time: the segment's range, its frames' true times, its fps."""

    start_ms: int
    end_ms: int
    frame_times_ms: tuple[int, ...]
    fps: float

    @property
    def length_s(self) -> float:
        return (self.end_ms - self.start_ms) / 1000


@dataclass(frozen=True, slots=True)
class ResolvedTime:
    ms: int | None  # None when the value could not be read
    out_of_range: bool = False
    absolute: bool = False  # the model gave a video time, not a clip time


def parse_time(value: object) -> tuple[float, bool] | None:
    """``(seconds, is_clock)`` from a number, ``"12.5"``, ``"12s"``, ``"MM:SS"`` or ``"HH:MM:SS[.mmm]"``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return (float(value), False) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = _CLOCK.match(text)
    if match:
        hours, minutes, seconds = match.groups()
        if int(minutes) >= 60 or float(seconds) >= 60:
            return None
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds), True
    match = _SECONDS.match(text)
    if match:
        return float(match.group(1)), False
    return None


def clip_to_video_ms(clip_s: float, clock: SegmentClock) -> float:
    """Seconds into the frame list -> video ms, interpolating between the frames' true times."""
    times = clock.frame_times_ms
    step_ms = 1000 / clock.fps if clock.fps > 0 else 1000.0
    if not times:
        return clock.start_ms + clip_s * 1000
    pos = clip_s * clock.fps if clock.fps > 0 else clip_s
    last = len(times) - 1
    if pos <= 0:
        return times[0] + pos * step_ms
    if pos >= last:
        return times[last] + (pos - last) * step_ms
    i = math.floor(pos)
    return times[i] + (times[i + 1] - times[i]) * (pos - i)


def resolve(value: object, clock: SegmentClock) -> ResolvedTime:
    """One model-reported time -> video ms, clamped to the segment (see the module docstring)."""
    parsed = parse_time(value)
    if parsed is None:
        return ResolvedTime(None)
    seconds, is_clock = parsed
    # Half a frame of slack: "the clip ends at 10 s" for ten 1-fps frames is not out of range.
    slack_ms = 500 / clock.fps if clock.fps > 0 else 500
    absolute = False
    if seconds < 0 or seconds * 1000 > (clock.end_ms - clock.start_ms) + slack_ms:
        as_video = seconds * 1000
        if is_clock and clock.start_ms - slack_ms <= as_video <= clock.end_ms + slack_ms and clock.start_ms > 0:
            absolute = True
    ms = seconds * 1000 if absolute else clip_to_video_ms(seconds, clock)
    out = ms < clock.start_ms - slack_ms or ms > clock.end_ms + slack_ms
    clamped = min(max(round(ms), clock.start_ms), clock.end_ms)
    return ResolvedTime(clamped, out, absolute)


def resolve_spans(
    items: Sequence[Mapping[str, Any]], clock: SegmentClock, keys: tuple[str, str] = ("start", "end")
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """Add ``start_ms``/``end_ms`` (and per-item ``flags``) to each ``{start, end, ...}`` item.

    Returns the new items and the segment-level flags (``time_out_of_range``, ``time_unreadable``,
    ``time_mixed_clock``)."""
    flags: set[str] = set()
    out: list[dict[str, Any]] = []
    for item in items:
        new = dict(item)
        item_flags: list[str] = []
        resolved: dict[str, int | None] = {}
        forms: set[bool] = set()
        for key in keys:
            if new.get(key) is None:
                resolved[key] = None
                continue
            r = resolve(new[key], clock)
            resolved[key] = r.ms
            if r.ms is not None:
                forms.add(r.absolute)
            if r.ms is None:
                item_flags.append(UNREADABLE)
            elif r.out_of_range:
                item_flags.append(OUT_OF_RANGE)
        if len(forms) > 1:  # e.g. start "00:07" into the clip, end "00:12" of the video: the span is a guess
            item_flags.append(MIXED_CLOCK)
        start, end = resolved[keys[0]], resolved[keys[1]]
        if start is not None and end is not None and end < start:
            start, end = end, start
        new[f"{keys[0]}_ms"] = start
        new[f"{keys[1]}_ms"] = end
        if item_flags:
            new["flags"] = sorted(set(item_flags))
            flags.update(item_flags)
        out.append(new)
    return out, tuple(sorted(flags))
