"""Sampling a video to JPEG files named by their true times, plus ``frames.csv``: the engine behind
``framescribe sample`` (the pipeline's reader and JPEG writer, chunked so memory stays flat).

With more than one usable CPU and keyframe intervals that hold few targets, the targets are cut into chunks
at keyframes and ``workers`` forked processes each decode (one single-threaded FFmpeg decoder each) and
JPEG-encode whole chunks; results are written in order. Each chunk is an ordinary ``frames`` call, so each
frame is the one exact decoding gives; a frame that serves the last target of one chunk and the first of
the next is written once. Single-threaded decoders spend less CPU than FFmpeg's frame threading (no frames
decoded ahead, no thread hand-offs), and independent chunks keep every core busy."""

from __future__ import annotations

import bisect
import csv
import itertools
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from worker.adapters.frames.local import JpegWriter
from worker.adapters.video import VideoReader, open_reader
from worker.adapters.video.pyav_probe import decoder_threads
from worker.config import LimitSettings
from worker.core.readplan import ReadPlan
from worker.core.sampling import as_fraction, sample_times
from worker.core.segments import clip_range
from worker.errors import PlanError, StoreError

CHUNK = 600  # targets per reader call: memory stays flat for any length
WRITERS = 2  # JPEG encoders working while the reader decodes (one reader)
THREADS_PER_CPU = 2  # decoding threads (each with its own reader) per usable CPU: see sample_workers
MAX_WORKERS = 8
SPAN_MS = 4000  # a parallel chunk is cut at the first keyframe after this much video, or after
SPAN_TARGETS = 30  # this many targets
HELD_TARGETS = 240  # chunks in flight hold at most this many targets' JPEGs (and at least one per worker)
TARGETS_PER_KEY = 30  # parallel chunks only when a keyframe interval holds at most this many targets
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


def key_chunks(times: Iterator[int], keys: Sequence[float], span_ms: float = SPAN_MS) -> Iterator[list[int]]:
    """Targets in chunks of at least ``span_ms`` of video or ``SPAN_TARGETS`` targets (at most ``CHUNK``),
    each cut just before the first target past a keyframe, so a chunk's decoding starts at its own keyframe."""
    chunk: list[int] = []
    for t in times:
        long = t - chunk[0] >= span_ms or len(chunk) >= SPAN_TARGETS if chunk else False
        if chunk and (len(chunk) >= CHUNK or (
            long and bisect.bisect_right(keys, t) > bisect.bisect_right(keys, chunk[-1])
        )):  # fmt: skip
            yield chunk
            chunk = []
        chunk.append(t)
    if chunk:
        yield chunk


def sample_workers(reader: VideoReader, fps: float, backend: str) -> tuple[int, list[float]]:
    """Decoding threads for this video (1: one reader, FFmpeg's own threads) and its keyframe times.

    Two per usable CPU: a chunk thread costs no extra CPU (unlike FFmpeg's frame threads), and on a busy
    machine the kernel shares CPU time per runnable thread, so with one per CPU a process running
    ``ffmpeg -vf fps=1`` (three decoder threads and its main thread on 2 CPUs) gets about twice our share
    of what is left (issue 19 goal 6)."""
    cpus = decoder_threads()
    keys_of: Callable[[], list[float]] | None = getattr(reader, "keyframe_times", None)
    if cpus < 2 or backend == "opencv" or keys_of is None:
        return 1, []
    keys = keys_of()
    gaps = [b - a for a, b in itertools.pairwise(keys)]
    if not gaps or max(gaps) * fps / 1000 > TARGETS_PER_KEY:
        return 1, []  # few keyframes: chunks would not start at one, and decoding would be done twice
    return min(THREADS_PER_CPU * cpus, MAX_WORKERS), keys


class _Output:
    """``frames.csv`` and the JPEG files, in target order; a frame already written is not written again."""

    def __init__(self, out_dir: Path, writer: SampleWriter, rows: Any) -> None:
        self.out_dir, self.writer, self.rows = out_dir, writer, rows
        self.count = 0
        self.last = -1

    def add(self, t_ms: int, encoded: tuple[bytes, int, int]) -> None:
        if t_ms <= self.last:
            return
        self.last = t_ms
        ref = self.writer.save(self.out_dir, self.count, t_ms, encoded)
        self.rows.writerow([ref.n, ref.t_ms, Path(ref.path).name])
        self.count += 1


def _one_reader(reader: VideoReader, targets: Iterator[int], out: _Output) -> None:
    """One reader (FFmpeg's decoder threads); JPEG encoding in a small pool while the next frames decode."""
    with ThreadPoolExecutor(WRITERS, thread_name_prefix="jpeg") as pool:
        pending: deque[tuple[int, Future[tuple[bytes, int, int]]]] = deque()

        def settle(limit: int) -> None:
            while len(pending) > limit:
                t_ms, job = pending.popleft()
                out.add(t_ms, job.result())

        for chunk in _chunks(targets):
            for t_ms, image in reader.frames(chunk):
                pending.append((t_ms, pool.submit(out.writer.encode, image)))
                settle(2 * WRITERS)
        settle(0)


_worker: tuple[Callable[[], VideoReader], SampleWriter] | None = None  # set in each worker process
_reader: VideoReader | None = None


def _start_worker(open_one: Callable[[], VideoReader], writer: SampleWriter) -> None:
    global _worker
    _worker = (open_one, writer)


def _chunk_task(chunk: list[int]) -> tuple[ReadPlan | None, list[tuple[int, tuple[bytes, int, int]]]]:
    """In a worker process: decode one chunk with this process's reader and JPEG-encode its frames."""
    global _reader
    assert _worker is not None
    open_one, writer = _worker
    if _reader is None:
        _reader = open_one()
    encoded = [(t_ms, writer.encode(image)) for t_ms, image in _reader.frames(chunk)]
    return getattr(_reader, "last_plan", None), encoded


def _parallel(
    open_one: Callable[[], VideoReader], chunks: Iterator[list[int]], workers: int, out: _Output
) -> ReadPlan | None:
    """``workers`` forked processes, each with its own single-threaded reader, decode and encode whole
    chunks; the results are written in chunk order. Chunks are queued well ahead (up to ``HELD_TARGETS``),
    so a worker the kernel holds back does not leave the others idle. Processes, not threads: on a busy
    machine a thread preempted while it holds the GIL stalls the others."""
    plan: ReadPlan | None = None
    context = multiprocessing.get_context("fork")  # the probe and the imports are inherited
    start = (open_one, out.writer)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=start) as pool:
        pending: deque[Future[tuple[ReadPlan | None, list[tuple[int, tuple[bytes, int, int]]]]]] = deque()

        sizes: deque[int] = deque()

        def settle(limit: int) -> None:
            nonlocal plan
            while pending and ((len(pending) > workers and sum(sizes) > limit) or limit == 0):
                plan, encoded = pending.popleft().result()
                sizes.popleft()
                for t_ms, data in encoded:
                    out.add(t_ms, data)

        try:
            for chunk in chunks:
                pending.append(pool.submit(_chunk_task, chunk))
                sizes.append(len(chunk))
                settle(HELD_TARGETS)
            settle(0)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return plan


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
    with (
        open_reader(video, limits, backend, keyframe_tolerance=keyframe_tolerance) as reader,
        open(tmp_csv, "w", newline="", encoding="utf-8") as fh,
    ):
        info = reader.probe()
        start_ms, end_ms = clip_range(info.duration_ms, start_s, end_s)
        rows = csv.writer(fh)
        rows.writerow(["n", "pts_ms", "file"])
        out = _Output(out_dir, writer, rows)
        targets = sample_times(start_ms, end_ms, rate)
        workers, keys = sample_workers(reader, float(rate), backend)
        if workers > 1:
            reader.close()  # its probe is remembered: the workers' readers do not demux the file again

            def open_one() -> VideoReader:
                return open_reader(video, limits, backend, keyframe_tolerance=keyframe_tolerance, threads=1)

            plan = _parallel(open_one, key_chunks(targets, keys), workers, out)
        else:
            _one_reader(reader, targets, out)
            plan = getattr(reader, "last_plan", None)
    os.replace(tmp_csv, csv_path)
    return SampleResult(out.count, time.perf_counter() - began, csv_path, plan)
