"""FrameSink: JPEG files under DATA_DIR/jobs/<job>/seg_<k>/frame_<n>.jpg, written atomically."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from worker.adapters.frames.review import fit_jpeg
from worker.adapters.frames.shrink import shrink
from worker.core.budget import frame_size
from worker.core.models import FrameRef
from worker.core.money import FrameBudget
from worker.errors import StoreError


def job_dir(data_dir: Path, job_id: str) -> Path:
    return data_dir / "jobs" / job_id


def segment_dir(data_dir: Path, job_id: str, index: int) -> Path:
    return job_dir(data_dir, job_id) / f"seg_{index:05d}"


def atomic_write(path: Path, data: bytes | Iterable[str]) -> None:
    """The one atomic write: a temp file in the same folder, then a rename, so readers never see half
    a file. ``data`` is bytes, or text chunks streamed to disk (an export)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        if isinstance(data, bytes):
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                for chunk in data:
                    fh.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class JpegWriter:
    """Resizes each frame to the pixel budget (sides multiples of ``factor``) and writes it as JPEG."""

    def __init__(self, max_pixels: int, quality: int = 90, factor: int = 32) -> None:
        self.max_pixels = max_pixels
        self.quality = quality
        self.factor = factor  # the model's token side (28 or 32 px): the service then resizes nothing

    def encode(self, image: np.ndarray) -> tuple[bytes, int, int]:
        h, w = image.shape[:2]
        tw, th = frame_size(w, h, self.max_pixels, self.factor)
        if (tw, th) != (w, h):
            up = tw * th > w * h
            image = cv2.resize(image, (tw, th), interpolation=cv2.INTER_CUBIC) if up else shrink(image, (tw, th))
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise StoreError("JPEG encoding failed")
        return buf.tobytes(), tw, th

    def write(self, folder: Path, n: int, t_ms: int, image: np.ndarray) -> FrameRef:
        data, w, h = self.encode(image)
        path = folder / f"frame_{n:04d}_{t_ms:010d}ms.jpg"
        try:
            atomic_write(path, data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreError(
                    f"disk full: cannot write frame {n} to {folder} ({exc.strerror}); free space under the data "
                    "folder (FRAMESCRIBE_DATA_DIR) or set worker.frames_retention_days, then retry the job"
                ) from None
            raise StoreError(f"cannot write frame {path}: {exc.strerror or exc}") from None
        return FrameRef(n=n, t_ms=t_ms, path=str(path.resolve()), width=w, height=h, size_bytes=len(data))


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class LocalFrames:
    """The ``FrameWriter`` port on local disk: ``DATA_DIR/jobs/<job>/seg_<k>/`` JPEGs, OpenCV thumbs."""

    def __init__(
        self, data_dir: Path, max_pixels: int, quality: int = 90, thumb_width: int = 480, review_side: int = 0
    ) -> None:
        self.data_dir = data_dir
        self.review_side = review_side  # the store's review copies (0: none)
        self.writer = JpegWriter(max_pixels, quality)
        self._writers: dict[tuple[int, int], JpegWriter] = {(max_pixels, self.writer.factor): self.writer}
        self.thumb_width = thumb_width

    def folder(self, job_id: str, index: int) -> Path:
        return segment_dir(self.data_dir, job_id, index)

    def clear(self, folder: Path) -> None:
        remove_tree(folder)

    def drop_job(self, job_id: str) -> None:
        remove_tree(job_dir(self.data_dir, job_id))

    def write(self, folder: Path, n: int, t_ms: int, image: np.ndarray, budget: FrameBudget | None = None) -> FrameRef:
        return self._writer(budget).write(folder, n, t_ms, image)

    def encode(self, image: np.ndarray, budget: FrameBudget | None = None) -> tuple[bytes, int, int]:
        return self._writer(budget).encode(image)

    def _writer(self, budget: FrameBudget | None) -> JpegWriter:
        """The writer for a job's frame budget: made once per budget, not per frame."""
        if budget is None:
            return self.writer
        key = (budget.max_pixels, budget.factor)
        if key not in self._writers:
            if len(self._writers) >= 64:  # per-job budgets are few; bounded all the same
                self._writers.clear()
            self._writers[key] = JpegWriter(budget.max_pixels, self.writer.quality, budget.factor)
        return self._writers[key]

    def review(self, image: np.ndarray, ref: FrameRef) -> bytes | None:
        """The frame's review copy from the decoded picture (no larger than the frame written from it), so the
        store need not decode the file again: 1.3 against 2.9 ms of CPU a 720p frame here."""
        if self.review_side <= 0:
            return None
        return fit_jpeg(image, min(self.review_side, max(ref.width, ref.height)))

    def thumb(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if w <= self.thumb_width:
            return image.copy()
        size = (self.thumb_width, max(1, round(h * self.thumb_width / w)))
        return shrink(image, size)
