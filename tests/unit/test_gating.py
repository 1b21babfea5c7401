"""Perceptual-hash gating: near-duplicate thinning at a uniform stride, reuse matching, cache keys."""

from __future__ import annotations

import dataclasses
import itertools
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from worker.core.gating import (
    CacheKey,
    dedup_stride,
    distance,
    find_reusable,
    frames_digest,
    from_hex,
    hausdorff,
    thinned,
    to_hex,
)
from worker.core.models import SegmentPlan
from worker.core.sampling import sample_times

A = 0x0F0F_0F0F_0F0F_0F0F
B = ~A & (2**64 - 1)  # 64 bits away from A


def near(h: int, bits: int) -> int:
    """``h`` with its lowest ``bits`` bits flipped."""
    return h ^ ((1 << bits) - 1)


def test_distance() -> None:
    assert distance(A, A) == 0 and distance(A, B) == 64 and distance(A, near(A, 3)) == 3


def test_identical_frames_thin_to_four_at_a_uniform_stride() -> None:
    assert dedup_stride([A] * 40, 2) == 10
    assert dedup_stride([A] * 41, 2) == 10, "ceil(41 / 10) = 5 frames remain"
    assert dedup_stride([A] * 4, 2) == 1 and dedup_stride([A] * 3, 2) == 1


def test_distinct_frames_are_all_kept() -> None:
    assert dedup_stride([A, B] * 10, 10) == 1
    assert dedup_stride([A] * 20, -1) == 1, "a negative limit is off"


def test_a_change_anywhere_limits_the_stride() -> None:
    hashes = [A] * 10 + [B] * 10
    assert dedup_stride(hashes, 4) == 5, "kept frames 0, 5, 10, 15 include the first B"
    assert dedup_stride([A] * 9 + [B] * 11, 4) == 3, "the first B (frame 9) must be a kept frame"
    assert dedup_stride([A] * 7 + [B] + [A] * 12, 4) == 1, "a single odd frame at 7 keeps everything"


@given(
    hashes=st.lists(st.sampled_from([A, near(A, 2), near(A, 5), B]), min_size=1, max_size=60),
    limit=st.integers(0, 64),
)
def test_stride_guarantees(hashes: list[int], limit: int) -> None:
    stride = dedup_stride(hashes, limit)
    kept = range(0, len(hashes), stride)
    assert len(kept) >= min(4, len(hashes))
    assert all(distance(hashes[i], hashes[i - i % stride]) <= limit for i in range(len(hashes)))


def test_thinned_plan_keeps_true_times_and_rate() -> None:
    fps = Fraction(2)
    plan = SegmentPlan(3, 10_000, 30_000, fps, tuple(sample_times(10_000, 30_000, fps)))
    thin = thinned(plan, 5)
    assert thin.targets_ms == (10_000, 12_500, 15_000, 17_500, 20_000, 22_500, 25_000, 27_500)
    assert thin.fps == Fraction(2, 5) and (thin.index, thin.start_ms, thin.end_ms) == (3, 10_000, 30_000)
    assert {b - a for a, b in itertools.pairwise(thin.targets_ms)} == {round(1000 / thin.fps)}
    assert thinned(plan, 1) is plan


def test_hausdorff_is_symmetric_and_bounded() -> None:
    assert hausdorff([A, near(A, 2)], [near(A, 1)], 3)
    assert not hausdorff([A], [A, B], 3), "B in the other segment has no near frame"
    assert not hausdorff([], [A], 64)


def test_find_reusable_picks_the_first_match_and_respects_off() -> None:
    described = [(7, [B]), (5, [near(A, 1), A]), (2, [A])]
    assert find_reusable([A, near(A, 2)], described, 3) == 5
    assert find_reusable([A], described, 0) is None
    assert find_reusable([near(A, 10)], described, 3) is None
    assert find_reusable([], described, 3) is None


def test_cache_key_changes_with_every_part() -> None:
    key = CacheKey("f" * 64, "Describe $x", "system", "qwen-vl-max-latest", Fraction(1), "dashscope", "describe")
    assert key.digest() == dataclasses.replace(key).digest()
    variants = [
        dataclasses.replace(key, frames_digest="e" * 64),
        dataclasses.replace(key, prompt="Describe $y"),
        dataclasses.replace(key, system_prompt="other"),
        dataclasses.replace(key, model="qwen3-vl-plus"),
        dataclasses.replace(key, fps=Fraction(1, 2)),
        dataclasses.replace(key, describer="other"),
        dataclasses.replace(key, preset="sports"),
    ]
    digests = {v.digest() for v in variants} | {key.digest()}
    assert len(digests) == len(variants) + 1


def test_frames_digest_depends_on_times_content_and_order() -> None:
    a = frames_digest([(0, b"x"), (1000, b"y")])
    assert a == frames_digest([(0, b"x"), (1000, b"y")])
    assert a != frames_digest([(1000, b"y"), (0, b"x")])
    assert a != frames_digest([(0, b"x"), (1001, b"y")])
    assert a != frames_digest([(0, b"x"), (1000, b"z")])


def test_hex_round_trip_keeps_64_bits() -> None:
    hashes = [0, A, B, 2**64 - 1]
    assert from_hex(to_hex(hashes)) == tuple(hashes)
    assert all(len(h) == 16 for h in to_hex(hashes))
