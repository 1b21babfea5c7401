"""Gating on 64-bit perceptual hashes: drop near-duplicate frames, reuse near-identical segments, cache keys.

Dropping keeps a uniform stride, so the frames that remain keep their true timestamps *and* a true
fps (``fps / stride``): DashScope reads times from the fps of a frame list, so thinning it unevenly
would make the model misplace events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from worker.core.models import SegmentPlan


def distance(a: int, b: int) -> int:
    """Hamming distance between two 64-bit hashes."""
    return (a ^ b).bit_count()


def dedup_stride(hashes: Sequence[int], max_distance: int, min_keep: int = 4) -> int:
    """The largest stride ``s`` such that every frame is within ``max_distance`` of the kept frame
    before it (frames ``0, s, 2s, …`` are kept) and at least ``min_keep`` frames remain.

    ``max_distance < 0`` or too few frames: 1 (keep everything)."""
    n = len(hashes)
    if max_distance < 0 or n <= min_keep:
        return 1
    for stride in range(n // min_keep, 1, -1):
        if -(-n // stride) < min_keep:
            continue
        if all(distance(hashes[i], hashes[i - i % stride]) <= max_distance for i in range(n)):
            return stride
    return 1


def thinned(plan: SegmentPlan, stride: int) -> SegmentPlan:
    """The plan with every ``stride``-th target and the rate those targets really have."""
    if stride <= 1:
        return plan
    return SegmentPlan(plan.index, plan.start_ms, plan.end_ms, plan.fps / stride, plan.targets_ms[::stride], plan.kind)


def hausdorff(a: Sequence[int], b: Sequence[int], limit: int) -> bool:
    """True when every hash of ``a`` has one in ``b`` within ``limit`` and vice versa (early exit)."""
    if not a or not b:
        return False
    return all(any(distance(x, y) <= limit for y in b) for x in a) and all(
        any(distance(y, x) <= limit for x in a) for y in b
    )


def find_reusable(
    hashes: Sequence[int], described: Iterable[tuple[int, Sequence[int]]], max_distance: int
) -> int | None:
    """Index of the first described segment whose frames are near-identical to ``hashes``, or None.

    ``max_distance <= 0`` turns reuse off."""
    if max_distance <= 0 or not hashes:
        return None
    for index, other in described:
        if hausdorff(hashes, other, max_distance):
            return index
    return None


@dataclass(frozen=True, slots=True)
class CacheKey:
    """What makes two describe calls the same call."""

    frames_digest: str
    prompt: str
    system_prompt: str
    model: str
    fps: Fraction
    describer: str
    preset: str

    def digest(self) -> str:
        body = json.dumps(
            [
                self.frames_digest,
                self.prompt,
                self.system_prompt,
                self.model,
                str(self.fps),
                self.describer,
                self.preset,
            ],
            ensure_ascii=False,
        )
        return hashlib.sha256(body.encode()).hexdigest()


def frames_digest(frames: Iterable[tuple[int, bytes]]) -> str:
    """sha256 over (time, content digest) of each frame sent, in order."""
    h = hashlib.sha256()
    for t_ms, content in frames:
        h.update(f"{t_ms}:".encode())
        h.update(content)
        h.update(b";")
    return h.hexdigest()


def to_hex(hashes: Iterable[int]) -> list[str]:
    return [f"{h:016x}" for h in hashes]


def from_hex(values: Iterable[str]) -> tuple[int, ...]:
    return tuple(int(v, 16) for v in values)
