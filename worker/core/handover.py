"""Which frames of the analysis pass the segments will sample: the hand-over of issue 19 goal 4.

A reader gives each target "the first frame at or after it (1 ms of rounding allowed)". A frame the
analysis pass decoded right after the previous one (no source frame between them, ``lo_ms`` =
previous time + 2) is that frame for every target in ``[lo_ms, t_ms]``. The segments' targets are only
known once the pass is over (they start at cuts), so the pass keeps the frames that serve a target of a
grid a segment may start: the job's start and every cut, each alive until a later cut is ``hold_ms`` old
(a shot shorter than that is merged into the one before it). After planning, ``cover`` tells whether a
segment's targets are all served by kept frames; a segment that is not decodes as before.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class Kept:
    """A kept frame: its time as the reader yields it, and the first target it is the exact frame of."""

    t_ms: int
    lo_ms: int


def grid_hit(start_ms: int, fps: Fraction, lo_ms: int, hi_ms: int) -> bool:
    """Whether ``start + round(1000 k / fps)`` (k ≥ 0, ``sample_times``' grid) lies in ``[lo, hi]``."""
    lo = max(lo_ms, start_ms)
    if hi_ms < lo:
        return False
    k = max(0, math.floor(Fraction(lo - start_ms) * fps / 1000) - 1)
    while True:
        t = start_ms + round(Fraction(1000 * k) / fps)
        if t > hi_ms:
            return False
        if t >= lo:
            return True
        k += 1


class Grids:
    """The sample grids a segment may start on during the pass. A grid stops being wanted ``hold_ms``
    after the latest cut following it (a shorter shot would be merged back into it)."""

    def __init__(self, start_ms: int, fps: Fraction, hold_ms: float) -> None:
        self.fps = fps
        self.hold_ms = hold_ms
        self.alive: dict[int, float] = {start_ms: math.inf}  # grid start -> time it stops being wanted

    def cut(self, at_ms: int) -> None:
        for s, until in self.alive.items():
            if s < at_ms <= until:  # a boundary at the cut, unless the shot after it proves short
                self.alive[s] = at_ms + self.hold_ms if until == math.inf else max(until, at_ms + self.hold_ms)
        self.alive.setdefault(at_ms, math.inf)

    def prune(self, now_ms: int) -> None:
        for s in [s for s, until in self.alive.items() if until < now_ms]:
            del self.alive[s]

    def wants(self, lo_ms: int, hi_ms: int, only: int | None = None) -> bool:
        """A wanted grid (or just the one from ``only``) has a target in ``[lo, hi]``."""
        starts = [only] if only is not None else list(self.alive)
        return any(grid_hit(s, self.fps, lo_ms, _upto(hi_ms, self.alive.get(s, math.inf))) for s in starts)


def _upto(hi_ms: int, until: float) -> int:
    return hi_ms if until >= hi_ms else math.floor(until)


def cover(targets: Sequence[int], kept: Sequence[Kept]) -> list[int] | None:
    """The kept frames (indexes into ``kept``, ordered by time) the reader would yield for ``targets``,
    each once; None when some target's exact frame was not kept."""
    times = [k.t_ms for k in kept]
    out: list[int] = []
    for t in targets:
        i = bisect.bisect_left(times, t)
        if i == len(kept) or kept[i].lo_ms > t:
            return None
        if not out or out[-1] != i:
            out.append(i)
    return out
