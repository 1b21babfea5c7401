"""``framescribe sample``: the sampled frames as JPEG with their true times, and nothing else.

The job a user would otherwise do with ``ffmpeg -i VIDEO -vf fps=F out/%06d.jpg``, done with the pipeline's
reader (``open_reader``: keyframes found by demuxing, only kept frames converted) and its JPEG writer. Files
are ``frame_<n>_<pts>ms.jpg``; ``frames.csv`` beside them lists ``n,pts_ms,file``. JPEG encoding runs in a
small thread pool while the next frames decode.
"""

from __future__ import annotations

import csv
import itertools
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from worker.adapters.frames.local import JpegWriter
from worker.adapters.video import open_reader
from worker.cli import ConfigOpt, app, guarded, out, settings_from
from worker.config import LimitSettings
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


@app.command()
def sample(
    video: Annotated[Path, typer.Argument(help="The video file to sample.")],
    fps: Annotated[float, typer.Option("--fps", help="Frames kept per second of video.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the JPEGs and frames.csv.")],
    start: Annotated[float | None, typer.Option(help="Start of the range (s).")] = None,
    end: Annotated[float | None, typer.Option(help="End of the range (s).")] = None,
    keyframes: Annotated[
        bool, typer.Option("--keyframes", help="Let the nearest keyframe within the tolerance stand in for a target.")
    ] = False,
    tolerance: Annotated[
        float | None,
        typer.Option(help="Seconds a keyframe may lie from its target (implies --keyframes; default 1/(2·fps))."),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="Reader: auto | opencv | pyav.")] = None,
    quality: Annotated[int | None, typer.Option(min=30, max=100, help="JPEG quality.")] = None,
    max_pixels: Annotated[int, typer.Option(min=0, help="Pixel budget per frame (0 = source size).")] = 0,
    config: ConfigOpt = None,
) -> None:
    """Write the frames sampled at FPS as JPEG files named with their true times, plus frames.csv."""
    settings = settings_from(config, None, None)
    if not (fps > 0 and fps <= 1000):
        raise PlanError(f"--fps must be above 0 (and at most 1000), got {fps:g}", field="fps")
    fraction = tolerance_fraction(fps, keyframes, tolerance)
    result = run_sample(
        video,
        out_dir,
        fps,
        start_s=start,
        end_s=end,
        keyframe_tolerance=fraction,
        backend=backend or settings.sampling.reader_backend,
        quality=quality or settings.sampling.jpeg_quality,
        max_pixels=max_pixels,
        limits=settings.limits,
    )
    how = f" ({result.plan.backend}/{result.plan.strategy})" if result.plan else ""
    out.print(
        f"wrote {result.frames} frames to {out_dir} in {result.seconds:.2f}s{how}; times in {result.csv_path}",
        markup=False,
    )


if __name__ == "__main__":  # python -m worker.cli_sample VIDEO --fps F --out DIR (no other command modules)
    guarded(lambda: app(["sample", *sys.argv[1:]], standalone_mode=True))
