"""Sampling a video to JPEG files named by their true times, plus ``frames.csv``: the engine behind
``framescribe sample`` (the pipeline's reader and JPEG writer, chunked so memory stays flat)."""

from __future__ import annotations

import csv
import itertools
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from worker.adapters.frames.local import JpegWriter
from worker.adapters.video import open_reader
from worker.config_sections import LimitSettings
from worker.core.models import FrameRef
from worker.core.readplan import ReadPlan
from worker.core.sampling import as_fraction, sample_times
from worker.core.segments import clip_range
from worker.errors import PlanError, StoreError

CHUNK = 600  # targets per reader call: memory stays flat for any length
WRITERS = 2  # JPEG encoders working while the reader decodes
CSV_NAME = "frames.csv"


class SampleWriter(JpegWriter):
    """The pipeline's JPEG writer; without a pixel budget (0) frames keep the source size, as ffmpeg's."""

    def encode(self, image: np.ndarray) -> tuple[bytes, int, int]:
        if self.max_pixels > 0:
            return super().encode(image)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise StoreError("JPEG encoding failed")
        h, w = image.shape[:2]
        return buf.tobytes(), w, h


@dataclass(frozen=True, slots=True)
class SampleResult:
    frames: int
    seconds: float
    csv_path: Path
    plan: ReadPlan | None


def tolerance_fraction(fps: float, keyframes: bool, tolerance_s: float | None) -> float:
    """The reader's keyframe tolerance (a fraction of the sampling interval) for ``--keyframes/--tolerance``."""
    if tolerance_s is None:
        return 0.5 if keyframes else 0.0
    if tolerance_s < 0:
        raise PlanError(f"--tolerance must be ≥ 0 seconds, got {tolerance_s:g}", field="tolerance")
    half = 0.5 / fps
    if tolerance_s > half + 1e-9:
        raise PlanError(
            f"--tolerance {tolerance_s:g}s is more than half the sampling interval ({half:g}s at {fps:g} fps); "
            "a keyframe could then stand in for two targets",
            field="tolerance",
        )
    return tolerance_s * fps


def _chunks(times: Iterator[int]) -> Iterator[list[int]]:
    while chunk := list(itertools.islice(times, CHUNK)):
        yield chunk


def run_sample(
    video: Path,
    out_dir: Path,
    fps: float,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
    keyframe_tolerance: float = 0.0,
    backend: str = "auto",
    quality: int = 90,
    max_pixels: int = 0,
    limits: LimitSettings | None = None,
) -> SampleResult:
    """Write the frames sampled at ``fps`` in ``[start, end)`` to ``out_dir`` and the CSV of their times."""
    began = time.perf_counter()
    rate: Fraction = as_fraction(fps)
    writer = SampleWriter(max_pixels, quality)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from None
    csv_path = out_dir / CSV_NAME
    tmp_csv = out_dir / f".{CSV_NAME}.tmp"
    count = 0
    with (
        open_reader(video, limits, backend, keyframe_tolerance=keyframe_tolerance) as reader,
        ThreadPoolExecutor(WRITERS, thread_name_prefix="jpeg") as pool,
        open(tmp_csv, "w", newline="", encoding="utf-8") as fh,
    ):
        info = reader.probe()
        start_ms, end_ms = clip_range(info.duration_ms, start_s, end_s)
        rows = csv.writer(fh)
        rows.writerow(["n", "pts_ms", "file"])
        pending: deque[Future[FrameRef]] = deque()

        def settle(limit: int) -> None:
            while len(pending) > limit:
                ref = pending.popleft().result()
                rows.writerow([ref.n, ref.t_ms, Path(ref.path).name])

        for chunk in _chunks(sample_times(start_ms, end_ms, rate)):
            for t_ms, image in reader.frames(chunk):
                pending.append(pool.submit(writer.write, out_dir, count, t_ms, image))
                count += 1
                settle(2 * WRITERS)
        settle(0)
        plan = getattr(reader, "last_plan", None)
    os.replace(tmp_csv, csv_path)
    return SampleResult(count, time.perf_counter() - began, csv_path, plan)
