"""The ``FrameHandover`` port on local disk: the analysis pass writes the frames the segments will sample.

While the pass decodes, each frame that is the exact frame of a target on a grid a segment may start
(``core/handover.py``) is written once, as the segment step would write it (same writer, budget and
quality), with its thumb (lossless PNG), to ``jobs/<job>/handover/``: memory holds only a few recent
frames (a cut is reported a few frames late). Once the plan is known every segment whose targets the kept
frames all serve gets them, named as the segment step names them, then ``handover.json`` (written
atomically, last) saying which targets and settings they are for. The segment step takes them only when
that manifest matches its plan and budget and every file is there; otherwise it decodes as before.
Taking them removes the manifest and thumbs (a segment delivered again decodes, as before).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from worker.adapters.frames.local import LocalFrames, atomic_write, job_dir, remove_tree
from worker.adapters.video import decoder_of
from worker.core.handover import Grids, Kept, cover
from worker.core.models import FrameRef, SegmentPlan
from worker.core.money import FrameBudget
from worker.core.ports import FrameKeeper
from worker.errors import StoreError

log = logging.getLogger(__name__)

MANIFEST = "handover.json"
RECENT = 8  # frames held for cuts reported late (the adaptive detector reports 2 frames late)
RECENT_BYTES = 64 * 1024**2  # ... but never more than this much image memory
PENDING = 2  # frames waiting for the writer thread (their images are held until written)
PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]


def thumb_name(n: int) -> str:
    return f".thumb_{n:04d}.png"


class SpillKeeper:
    """One pass's kept frames: written as they come to the spill folder, listed in memory (a few numbers each)."""

    def __init__(self, frames: LocalFrames, spill: Path, start_ms: int, fps: Fraction, budget: FrameBudget,
                 hold_ms: float) -> None:  # fmt: skip
        self.frames, self.spill, self.budget = frames, spill, budget
        self.grids = Grids(start_ms, fps, hold_ms)
        self.kept: dict[int, tuple[Kept, int, int, int]] = {}  # t_ms -> (range, width, height, bytes)
        self.recent: deque[tuple[Kept, np.ndarray]] = deque()
        self.recent_bytes = 0
        self.decoders: set[str] = set()
        self.failed = False
        self.sent: set[int] = set()  # times handed to the writer thread
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="handover")  # encodes while the pass decodes
        self.pending: deque[Future[None]] = deque()

    def offer(self, t_ms: int, image: Any, lo_ms: int | None, cuts_ms: Sequence[int], decoder: str) -> None:
        self.decoders.add(decoder)
        for c in cuts_ms:
            self.grids.cut(c)
            for k, img in self.recent:  # frames already gone by when the cut was reported
                if self.grids.wants(k.lo_ms, k.t_ms, only=c):
                    self._write(k, img)
        if image is None or lo_ms is None:
            self._forget()  # a frame may lie before this one: older frames can no longer be placed
            return
        self.grids.prune(lo_ms)
        k = Kept(t_ms, lo_ms)
        if lo_ms <= t_ms and self.grids.wants(lo_ms, t_ms):
            self._write(k, image)
        self.recent.append((k, image))
        self.recent_bytes += image.nbytes
        while len(self.recent) > RECENT or self.recent_bytes > RECENT_BYTES:
            self.recent_bytes -= self.recent.popleft()[1].nbytes

    def _forget(self) -> None:
        self.recent.clear()
        self.recent_bytes = 0

    def _write(self, k: Kept, image: np.ndarray) -> None:
        if k.lo_ms > k.t_ms or self.failed or k.t_ms in self.sent:
            return
        self.sent.add(k.t_ms)
        self.pending.append(self.pool.submit(self._store, k, image))
        while len(self.pending) > PENDING:
            self.pending.popleft().result()

    def settle(self) -> None:
        """Wait for the frames being written; the writer thread ends."""
        while self.pending:
            self.pending.popleft().result()
        self.pool.shutdown()

    def _store(self, k: Kept, image: np.ndarray) -> None:
        if self.failed:
            return
        try:
            data, w, h = self.frames.encode(image, self.budget)
            ok, png = cv2.imencode(".png", self.frames.thumb(image), PNG)
            if not ok:
                return
            atomic_write(self.spill / f"{k.t_ms:010d}.jpg", data)
            atomic_write(self.spill / f"{k.t_ms:010d}.png", png.tobytes())
        except (OSError, StoreError) as exc:  # a full disk costs the hand-over, never the plan
            log.warning("%s: keeping frames stopped (%s); its segments decode them", self.spill.parent.name, exc)
            self.failed = True
            return
        self.kept[k.t_ms] = (k, w, h, len(data))


class LocalHandover:
    """Hand-over through the local frames folder (a segment on a machine without it decodes as before)."""

    def __init__(self, frames: LocalFrames) -> None:
        self.frames = frames

    def keeper(self, job_id: str, start_ms: int, fps: Fraction, budget: FrameBudget, hold_ms: float) -> FrameKeeper:
        spill = job_dir(self.frames.data_dir, job_id) / "handover"
        remove_tree(spill)
        spill.mkdir(parents=True, exist_ok=True)
        return SpillKeeper(self.frames, spill, start_ms, fps, budget, hold_ms)

    def discard(self, keeper: FrameKeeper) -> None:
        if isinstance(keeper, SpillKeeper):
            keeper.settle()
            keeper._forget()
            remove_tree(keeper.spill)

    def hand_over(self, keeper: FrameKeeper, plans: Iterable[SegmentPlan]) -> int:
        if not isinstance(keeper, SpillKeeper):
            return 0
        keeper.settle()
        keeper._forget()
        job = keeper.spill.parent
        kept = sorted(keeper.kept.values(), key=lambda v: v[0].t_ms)
        ranges = [v[0] for v in kept]
        handed = 0
        try:
            for plan in plans:
                if plan.kind != "describe" or not plan.targets_ms:
                    continue
                folder = self.frames.folder(job.name, plan.index)
                self.frames.clear(folder)  # an earlier plan's frames (a retried job) are never taken for these
                picks = cover(plan.targets_ms, ranges)
                if picks is None or len(keeper.decoders) != 1:
                    continue
                try:
                    refs = [self._place(keeper.spill, folder, n, kept[i]) for n, i in enumerate(picks)]
                    self._manifest(folder, plan, self._settings(keeper.budget, *keeper.decoders), refs)
                except OSError as exc:  # a full disk: this segment decodes its frames
                    log.warning("%s: segment %d not handed its frames: %s", job.name, plan.index, exc)
                    self.frames.clear(folder)
                    continue
                handed += 1
        finally:
            remove_tree(keeper.spill)
        log.info("%s: %d segment(s) handed their frames by the analysis pass (%d kept)", job.name, handed, len(kept))
        return handed

    def _place(self, spill: Path, folder: Path, n: int, entry: tuple[Kept, int, int, int]) -> FrameRef:
        k, w, h, size = entry
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"frame_{n:04d}_{k.t_ms:010d}ms.jpg"
        _link(spill / f"{k.t_ms:010d}.jpg", path)
        _link(spill / f"{k.t_ms:010d}.png", folder / thumb_name(n))
        return FrameRef(n=n, t_ms=k.t_ms, path=str(path.resolve()), width=w, height=h, size_bytes=size)

    def _manifest(self, folder: Path, plan: SegmentPlan, settings: list[Any], refs: list[FrameRef]) -> None:
        frames = [[r.n, r.t_ms, Path(r.path).name, r.width, r.height, r.size_bytes] for r in refs]
        body = {"targets": list(plan.targets_ms), "settings": settings, "frames": frames}
        atomic_write(folder / MANIFEST, json.dumps(body).encode())

    def _settings(self, budget: FrameBudget, decoder: str) -> list[Any]:
        return [budget.max_pixels, budget.factor, self.frames.writer.quality, self.frames.thumb_width, decoder]

    def take(
        self, folder: Path, plan: SegmentPlan, budget: FrameBudget, reader: Any
    ) -> tuple[list[FrameRef], list[Any]] | None:
        if not (folder / MANIFEST).is_file():
            return None
        try:
            body = json.loads((folder / MANIFEST).read_bytes())
            settings = self._settings(budget, decoder_of(reader, plan.targets_ms))
            if body["targets"] != list(plan.targets_ms) or body["settings"] != settings:
                return None
            refs, thumbs = [], []
            for n, t_ms, name, w, h, size in body["frames"]:
                path = folder / name
                if path.stat().st_size != size:
                    return None
                thumb = cv2.imread(str(folder / thumb_name(n)), cv2.IMREAD_UNCHANGED)
                if thumb is None:
                    return None
                refs.append(FrameRef(n=n, t_ms=t_ms, path=str(path.resolve()), width=w, height=h, size_bytes=size))
                thumbs.append(thumb)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        (folder / MANIFEST).unlink()  # taken once: the folder now holds what the segment step writes
        for ref in refs:
            (folder / thumb_name(ref.n)).unlink(missing_ok=True)
        return refs, thumbs


def _link(src: Path, dst: Path) -> None:
    """A second name for a spilled file (a copy where the disk cannot link)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
