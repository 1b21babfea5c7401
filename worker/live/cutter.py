"""Pure logic of rolling segments: wall-clock time of frames, wall-clock windows, motion gating, pre-event buffer.

A frame's UTC is the machine's UTC at receipt of the connection's first frame plus the PTS elapsed since
that frame; it is re-anchored when it drifts from the receipt clock by more than ``drift_ms`` (a PTS jump
or a server that restarts its timestamps), and kept strictly increasing. Windows are aligned to UTC
multiples of ``segment_ms``; a window broken by a disconnect closes at its last frame (no fake span).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class LiveFrame:
    utc_ms: int  # wall clock (ms since the Unix epoch)
    pts_ms: int  # stream-relative presentation time within one connection
    image: Any  # what the watcher keeps of the frame (JPEG bytes and a small copy), never the full picture
    motion: float = 0.0  # fraction of pixels that changed since the previous sampled frame


@dataclass(slots=True)
class Window:
    """A closed rolling segment."""

    start_utc_ms: int
    end_utc_ms: int
    frames: list[LiveFrame]
    static: bool
    pre_event: list[LiveFrame] = field(default_factory=list)  # frames kept from before, prepended when motion starts
    complete: bool = True  # False when a disconnect or stop cut it short

    @property
    def all_frames(self) -> list[LiveFrame]:
        return [*self.pre_event, *self.frames]

    @property
    def described_start_ms(self) -> int:
        return self.pre_event[0].utc_ms if self.pre_event else self.start_utc_ms


class WallClock:
    """UTC at receipt corrected by PTS, strictly increasing."""

    def __init__(self, drift_ms: int = 2000) -> None:
        self.drift_ms = drift_ms
        self._anchor: tuple[int, int] | None = None  # (utc at receipt, pts)
        self._last = -1

    def reset(self) -> None:
        """A new connection: PTS start again, the next frame re-anchors."""
        self._anchor = None

    def utc_ms(self, pts_ms: int, received_utc_ms: int) -> int:
        if self._anchor is None:
            self._anchor = (received_utc_ms, pts_ms)
        t = self._anchor[0] + pts_ms - self._anchor[1]
        if abs(t - received_utc_ms) > self.drift_ms:
            self._anchor = (received_utc_ms, pts_ms)
            t = received_utc_ms
        t = max(t, self._last + 1)
        self._last = t
        return t


def motion_score(previous: Any, current: Any, pixel_delta: int = 25) -> float:
    """Fraction of pixels of two small grey images that differ by more than ``pixel_delta``."""
    import numpy as np

    if previous is None or previous.shape != current.shape:
        return 0.0
    diff = np.abs(previous.astype(np.int16) - current.astype(np.int16))
    return float((diff > pixel_delta).mean())


class Cutter:
    """Feeds sampled frames into UTC-aligned windows; yields each window when it closes."""

    def __init__(
        self, segment_ms: int, sample_ms: int, *, motion: bool, threshold: float, pre_event_ms: int, min_frames: int = 1
    ) -> None:
        if segment_ms <= 0 or sample_ms <= 0:
            raise ValueError("segment and sample intervals must be positive")
        self.segment_ms = segment_ms
        self.sample_ms = sample_ms
        self.motion = motion
        self.threshold = threshold
        self.pre_event_ms = pre_event_ms
        self.min_frames = min_frames
        self._frames: list[LiveFrame] = []
        self._window: int | None = None  # start of the open window (UTC ms)
        self._continuous = False  # the open window began at a boundary with no gap before it
        self._next_sample = 0
        self._last_static = False
        self._buffer: deque[LiveFrame] = deque()  # recent frames of static windows (pre-event buffer)

    def wants(self, utc_ms: int) -> bool:
        """True when a frame at ``utc_ms`` should be sampled: the first at or after each multiple of ``sample_ms``."""
        return utc_ms >= self._next_sample

    def push(self, frame: LiveFrame) -> Iterator[Window]:
        """A first window (after a connect) shorter than half a segment or with fewer than ``min_frames``
        frames joins the next one, so a segment the model cannot take is not cut."""
        self._next_sample = (frame.utc_ms // self.sample_ms + 1) * self.sample_ms  # a UTC grid: a true fps
        start = frame.utc_ms - frame.utc_ms % self.segment_ms
        if self._window is not None and start != self._window and self._short_start(start):
            self._window = start  # a first window shorter than half a segment joins the next one
        if self._window is not None and start != self._window:
            contiguous = start == self._window + self.segment_ms
            closed = self._close(self._window + self.segment_ms, complete=True)
            if closed is not None:
                yield closed
            self._continuous = contiguous
        if self._window is None:
            self._window = start
        self._frames.append(frame)

    def discard(self) -> Window | None:
        """Drop the open window (the run ended at the boundary before it: it is after the end, not a gap)."""
        self._frames = []
        self._window = None
        return None

    def _short_start(self, start: int) -> bool:
        return (
            not self._continuous
            and bool(self._frames)
            and start == (self._window or 0) + self.segment_ms
            and (start - self._frames[0].utc_ms < self.segment_ms // 2 or len(self._frames) < self.min_frames)
        )

    def flush(self, *, reason_gap: bool = True) -> Window | None:
        """Close the open window at its last frame (a disconnect or a stop): the next one starts fresh."""
        if self._window is None or not self._frames:
            self._window = None
            return None
        end = min(self._frames[-1].utc_ms + self.sample_ms, self._window + self.segment_ms)
        w = self._close(end, complete=False)
        self._continuous = False
        return w

    def _close(self, end_ms: int, *, complete: bool) -> Window | None:
        frames, self._frames = self._frames, []
        start_window = self._window
        self._window = None
        if not frames or start_window is None:
            return None
        start = start_window if self._continuous else frames[0].utc_ms
        static = self.motion and max((f.motion for f in frames), default=0.0) < self.threshold
        pre: list[LiveFrame] = []
        if self.motion and not static and self._last_static:
            pre = [f for f in self._buffer if start - self.pre_event_ms <= f.utc_ms < start]
        if static:
            self._buffer.extend(frames)
            while self._buffer and self._buffer[0].utc_ms < end_ms - self.pre_event_ms:
                self._buffer.popleft()
        else:
            self._buffer.clear()
        self._last_static = static
        return Window(start, max(end_ms, frames[-1].utc_ms + 1), frames, static, pre, complete)

    def skip_before(self, utc_ms: int) -> None:
        """Resume after a restart: frames before ``utc_ms`` (already stored) are not sampled."""
        self._next_sample = max(self._next_sample, utc_ms)
