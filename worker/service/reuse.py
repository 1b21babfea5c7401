"""Spending less: thinning near-duplicate frames, the description cache and in-job reuse, accounting.

* ``dedup``: near-duplicate frames are dropped at a uniform stride (true times, true fps, >= 4 frames).
* ``lookup`` / ``remember``: an exact cache (frames + prompt + model + fps) and in-job reuse of a
  near-identical segment (pHash distance); both store the segment as ``done`` with no tokens, flagged
  ``cached`` or with ``reused_from`` set (``flags`` ``reused``).
* ``tokens_saved``: what static, reused and thinned segments did not cost, estimated from the plan.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from concurrent import futures
from concurrent.futures import Future
from fractions import Fraction
from pathlib import Path
from typing import Any

from worker.config import Settings
from worker.core import budget, gating
from worker.core.models import Description, FrameRef, SegmentPlan, SegmentRow
from worker.core.ports import Describer, DescribeRequest, DescriptionCache, ResultStore
from worker.core.segmenters import count_times
from worker.core.states import DESCRIBED_SEGMENT
from worker.options import JobOptions
from worker.service.options import resolve

log = logging.getLogger(__name__)


# -- gating -----------------------------------------------------------------------------------
def dedup(
    plan: SegmentPlan, frames: list[FrameRef], thumbs: list[Any], hashes: Sequence[int], settings: Settings
) -> tuple[SegmentPlan, list[FrameRef], list[Any]]:
    """Thin the frames at the largest stride that only drops near-duplicates; the dropped JPEGs are deleted."""
    limit = settings.sampling.dedup_hash_distance
    if limit <= 0 or len(frames) != len(hashes) or len(frames) != plan.frame_count:
        return plan, frames, thumbs
    stride = gating.dedup_stride(hashes, limit, settings.sampling.min_frames)
    if stride <= 1:
        return plan, frames, thumbs
    for k, f in enumerate(frames):
        if k % stride:
            Path(f.path).unlink(missing_ok=True)
    kept = frames[::stride]
    kept = [FrameRef(n, f.t_ms, f.path, f.width, f.height, f.size_bytes) for n, f in enumerate(kept)]
    return gating.thinned(plan, stride), kept, thumbs[::stride]


# -- cache and reuse --------------------------------------------------------------------------
def cache_key(
    request: DescribeRequest, prompt: str, describer: Describer, opts: JobOptions, settings: Settings
) -> str | None:
    """The call's cache key (``prompt`` as rendered without ``$previous``); None when caching is off or
    the describer is the free local one."""
    name = getattr(describer, "name", type(describer).__name__)
    if not settings.sampling.cache_descriptions or name == "local":
        return None
    model = resolve(opts, settings).model if name == "dashscope" else name
    digest = gating.frames_digest((f.t_ms, hashlib.sha256(Path(f.path).read_bytes()).digest()) for f in request.frames)
    key = gating.CacheKey(
        digest, prompt, request.system_prompt, model, Fraction(request.fps).limit_denominator(1_000_000),
        name, request.preset,
    )  # fmt: skip
    return key.digest()


def lookup(
    cache: DescriptionCache | None, store: ResultStore, job_id: str, index: int, key: str | None,
    hashes: Sequence[int], settings: Settings,
) -> tuple[Description, int | None] | None:  # fmt: skip
    """A description that makes the call unnecessary: ``(cached, None)`` or ``(copy, reused_from)``."""
    if cache is None:
        return None
    if key is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit[0], None
    limit = settings.sampling.reuse_hash_distance
    if limit <= 0:
        return None
    others = ((i, h) for i, h in cache.signatures(job_id) if i != index)
    match = gating.find_reusable(hashes, others, limit)
    if match is None:
        return None
    row = store.segment(job_id, match)
    if row.state != "done" or not row.description:
        return None
    source = row.reused_from if row.reused_from is not None else match
    desc = Description(row.description, row.structured, row.describer or "", row.model, flags=("reused",))
    return desc, source


def remember(
    cache: DescriptionCache | None, job_id: str, index: int, key: str | None, desc: Description,
    hashes: Sequence[int], settings: Settings,
) -> None:  # fmt: skip
    """After a described segment is stored: cache its description, record its signature for reuse."""
    if cache is None:
        return
    if key is not None and "cached" not in desc.flags:
        cache.put(key, desc)
    if settings.sampling.reuse_hash_distance > 0 and hashes:
        cache.add_signature(job_id, index, hashes)


def wait_for_twin(
    hashes: Sequence[int], flying: dict[int, tuple[list[int], Future[Description]]], settings: Settings
) -> None:
    """Wait for a near-identical segment still being described (dropping finished calls from
    ``flying``), so that ``lookup`` finds it stored and this segment reuses it instead of a call."""
    if settings.sampling.reuse_hash_distance <= 0:
        return
    for index in [i for i, (_, fut) in flying.items() if fut.done()]:
        del flying[index]
    twin = gating.find_reusable(hashes, ((i, h) for i, (h, _) in flying.items()), settings.sampling.reuse_hash_distance)
    if twin is not None:
        futures.wait([flying[twin][1]])


# -- accounting -------------------------------------------------------------------------------
def planned_tokens(row: SegmentRow, width: int, height: int, limits: budget.ModelLimits, max_frames: int) -> int:
    """Video tokens the row's span would cost sent in full at its planned rate (static spans in calls of
    ``max_frames``)."""
    fps = Fraction(row.fps or "1")
    frames = count_times(row.start_ms, row.end_ms, fps)
    calls, rest = divmod(frames, max_frames)
    tokens = calls * budget.video_tokens(max_frames, width, height, limits)
    return tokens + (budget.video_tokens(rest, width, height, limits) if rest else 0)


def tokens_saved(
    rows: Iterable[SegmentRow], video: dict[str, Any] | None, limits: budget.ModelLimits, settings: Settings
) -> int:
    """Estimated video tokens not spent: static and reused rows in full, thinned rows the difference."""
    video = video or {}
    if not video.get("width") or not video.get("height"):
        return 0
    px = min(settings.sampling.max_pixels, limits.video_max_pixels)  # the size frames are written at (spend.py)
    w, h = budget.frame_size(int(video["width"]), int(video["height"]), px, limits.factor)
    saved = 0
    for row in rows:
        if row.state not in DESCRIBED_SEGMENT:
            continue
        copied = row.reused_from is not None or "cached" in row.flags
        if row.state == "done" and row.video_tokens == 0 and not copied:
            continue  # described by a free describer: nothing was at stake
        planned = planned_tokens(row, w, h, limits, settings.sampling.max_frames or limits.max_frames)
        saved += max(0, planned - row.video_tokens)
    return saved
