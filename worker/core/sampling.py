"""Which instants of a video to sample for a target fps (exact, with Fraction arithmetic)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction

from worker.errors import PlanError


def as_fraction(fps: float | Fraction) -> Fraction:
    """A rate as an exact fraction (29.97 -> 2997/100, 1/3 stays 1/3 within 1e-6)."""
    if isinstance(fps, Fraction):
        return fps
    if not math.isfinite(fps) or fps <= 0:
        raise PlanError(f"sampling fps must be a positive number, got {fps}", field="fps")
    return Fraction(fps).limit_denominator(1_000_000)


def sample_times(start_ms: int, end_ms: int, fps: Fraction) -> Iterator[int]:
    """Target times in ``[start_ms, end_ms)`` spaced ``1/fps`` apart, rounded to whole ms."""
    k = 0
    while True:
        t = start_ms + round(Fraction(1000 * k) / fps)
        if t >= end_ms:
            return
        yield t
        k += 1


def spread(start_ms: int, end_ms: int, n: int) -> tuple[tuple[int, ...], Fraction]:
    """``n`` times evenly over ``[start_ms, end_ms)`` and the rate they imply (a re-sampled tail)."""
    length = max(1, end_ms - start_ms)
    fps = Fraction(1000 * n, length)
    times = tuple(start_ms + round(Fraction(length * k, n)) for k in range(n))
    return times, fps
