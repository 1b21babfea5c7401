"""FrameSource over cv2.VideoCapture: probes, seeks when it pays, yields frames with their true PTS."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# FFmpeg's own decoder chatter (one line per damaged macroblock) is not for people; errors surface as ours.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2
import numpy as np

from worker.adapters.files import check_file
from worker.adapters.video import probes
from worker.config_sections import LimitSettings
from worker.core.models import VideoInfo
from worker.core.readplan import Strategy
from worker.errors import DecodeError, VideoOpenError

log = logging.getLogger(__name__)

SEEK_AHEAD_MS = 5000  # beyond this gap a seek costs less than grabbing through (GOP ≤ ~5 s)
MAX_RECOVERIES = 8  # seeks past damaged stretches per frames() call before giving up


def check_stream(path: Path, fps: float, width: int, height: int, limits: LimitSettings) -> None:
    """Refuse a stream whose header facts no reader can work with (shared by every backend)."""
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        raise VideoOpenError(
            f"{path}: the video declares no usable frame rate (fps={fps:g}); "
            "re-mux it (ffmpeg -i IN -c copy OUT.mp4) or re-encode with a fixed rate"
        )
    if width <= 0 or height <= 0:
        raise VideoOpenError(
            f"{path}: no usable video stream (frame size {width}x{height}): audio only, or a corrupt header"
        )
    if width * height > limits.max_source_pixels:
        raise VideoOpenError(
            f"{path}: {width}x{height} frames are larger than the limit of {limits.max_source_pixels} pixels"
        )


def build_info(
    path: Path,
    limits: LimitSettings,
    duration_ms: int,
    claimed_ms: float,
    fps: float,
    width: int,
    height: int,
    codec: str,
    size_bytes: int,
) -> VideoInfo:
    """The probed facts as VideoInfo, refusing a (measured) duration over the limit; shared by every backend."""
    if duration_ms > limits.max_duration_s * 1000:
        raise VideoOpenError(
            f"{path}: {duration_ms / 3_600_000:.1f} h is longer than the limit of {limits.max_duration_s / 3600:.1f} h"
        )
    return VideoInfo(
        claimed_duration_ms=round(claimed_ms),
        duration_ms=duration_ms,
        fps=fps,
        frame_count=max(1, round(duration_ms * fps / 1000)),
        width=width,
        height=height,
        codec=codec,
        size_bytes=size_bytes,
    )


class OpenCVReader:
    """One open video. Not thread-safe: one reader per thread or task."""

    backend = "opencv"

    def __init__(self, path: str | Path, limits: LimitSettings | None = None, *, keyframe_tolerance: float = 0.0):
        self.path = Path(path)
        self.limits = limits or LimitSettings()
        self.keyframe_tolerance = keyframe_tolerance  # accepted for the common API; exact frames always fit it
        self._size = check_file(self.path, self.limits)
        self._cap: Any = None
        self._info: VideoInfo | None = None
        self._pos_ms: float = -1.0  # pts of the last grabbed frame
        self._eof = False
        self.passed = 0  # frames gone by without being yielded (passed over or sought past): counted

    # -- opening and probing -------------------------------------------------------------------
    def _open(self) -> Any:
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise VideoOpenError(
                f"{self.path}: not a video OpenCV/FFmpeg can open (wrong format, corrupt or not a video)"
            )
        self._pos_ms, self._eof = -1.0, False
        return cap

    @property
    def cap(self) -> Any:
        if self._cap is None:
            self._cap = self._open()
        return self._cap

    def probe(self) -> VideoInfo:
        if self._info is not None:
            return self._info
        memo = probes.key(self.backend, self.path, self.limits)
        known: VideoInfo | None = probes.recall(memo)
        if known is not None:  # probed before in this process (worker/adapters/video/probes.py)
            self._info = known
            return known
        cap = self.cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
        codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ") or "unknown"
        check_stream(self.path, fps, width, height, self.limits)
        first = self._grab()
        if first is None:
            raise VideoOpenError(f"{self.path}: the video has no decodable frames")
        duration_ms = self._true_duration_ms(fps, count)
        claimed_ms = count / fps * 1000 if count > 0 else 0.0
        self._info = build_info(self.path, self.limits, duration_ms, claimed_ms, fps, width, height, codec, self._size)
        probes.remember(memo, self._info)
        return self._info

    def _true_duration_ms(self, fps: float, count: int) -> int:
        """Header duration, checked by seeking near its end; a lying header is measured instead."""
        claimed = count / fps * 1000 if count > 0 else 0.0
        frame_ms = 1000 / fps
        if claimed > 0:
            self._seek(max(0.0, claimed - 3 * frame_ms))
            last = None
            while (t := self._grab()) is not None:
                last = t
            if last is not None and last >= claimed - 2000:
                self._rewind()
                return round(last + frame_ms)
            log.warning("%s: header claims %.1fs; measuring the real length", self.path, claimed / 1000)
        self._rewind()
        last_t = 0.0
        deadline = time.monotonic() + self.limits.decode_timeout_s
        while (t := self._grab()) is not None:
            last_t = t
            if time.monotonic() > deadline:
                raise VideoOpenError(f"{self.path}: measuring its length took longer than the decode limit")
        self._rewind()
        return round(last_t + frame_ms)

    # -- low level ---------------------------------------------------------------------------
    def _grab(self) -> float | None:
        if self._eof or not self.cap.grab():
            self._eof = True
            return None
        self._pos_ms = float(self.cap.get(cv2.CAP_PROP_POS_MSEC))
        return self._pos_ms

    def _seek(self, ms: float) -> None:
        self.cap.set(cv2.CAP_PROP_POS_MSEC, ms)
        self._pos_ms, self._eof = -1.0, False

    def _rewind(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap = self._open()

    # -- sampling ----------------------------------------------------------------------------
    def frames(
        self, targets_ms: Sequence[int], *, strategy: Strategy | None = None, tolerance: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(pts_ms, bgr)`` for each target: the first frame at or after it (1 ms of rounding
        allowed); a frame serves every target up to its own time. Frames not kept are grabbed, never
        converted. ``strategy`` seek jumps to every target more than SEEK_AHEAD_MS ahead; otherwise only
        the first target is sought. OpenCV cannot tell keyframes, so ``tolerance`` changes nothing: exact
        frames are always within it. Raises DecodeError with the time where decoding stopped if the
        stream breaks before the last target."""
        if not targets_ms:
            return
        info = self.probe()
        first = targets_ms[0]
        if self._pos_ms >= first - 1 or first - self._pos_ms > SEEK_AHEAD_MS or self._eof:
            self._position_before(first)
        seek_each = strategy is Strategy.SEEK
        deadline = time.monotonic() + self.limits.decode_timeout_s
        end_ms = info.duration_ms - 2 * (1000 / info.fps)
        i = recoveries = consecutive = 0
        last_kept = last_t = -1.0
        while i < len(targets_ms):
            if seek_each and i > 0 and targets_ms[i] - self._pos_ms > SEEK_AHEAD_MS:
                self.passed += 1
                self._position_before(targets_ms[i])
            t = self._grab()
            if t is None:
                # Damage mid-stream: seek past it to the next target rather than give up the rest. A second
                # failure in a row skips that target too; a third means the stream has really ended.
                consecutive += 1
                if consecutive > 2 or recoveries >= MAX_RECOVERIES or targets_ms[i] >= end_ms:
                    break
                recoveries += 1
                i += consecutive - 1
                if i >= len(targets_ms):
                    break
                log.warning("%s: decoding broke after %.2fs; skipping to %.2fs", self.path,
                            max(last_t, 0) / 1000, targets_ms[i] / 1000)  # fmt: skip
                self.passed += 1
                self._seek(targets_ms[i])
                continue
            consecutive = 0
            last_t = max(last_t, t)
            if time.monotonic() > deadline:
                limit = self.limits.decode_timeout_s
                raise DecodeError(f"decoding stalled at {t / 1000:.2f}s: over the {limit:g}s limit", at_ms=round(t))
            if t + 1 < targets_ms[i] or t <= last_kept:
                self.passed += 1
                continue
            ok, image = self.cap.retrieve()
            if not ok or image is None:
                raise DecodeError(f"frame at {t / 1000:.3f}s cannot be decoded", at_ms=round(t))
            last_kept = t
            yield round(t), image
            while i < len(targets_ms) and targets_ms[i] <= t + 1:
                i += 1
        if i < len(targets_ms) and targets_ms[i] < end_ms:
            at = max(0, round(last_t))
            raise DecodeError(
                f"the video stops decoding at {at / 1000:.2f}s although it should last "
                f"{info.duration_ms / 1000:.2f}s (truncated or corrupt)",
                at_ms=at,
            )

    def _position_before(self, target_ms: int) -> None:
        """Seek so the next grab is at or before ``target_ms``; fall back to a rewind on a bad seek."""
        if target_ms <= SEEK_AHEAD_MS:
            self._rewind()
            return
        self._seek(max(0.0, target_ms - 2000))
        t = self._grab()
        if t is None or t >= target_ms - 1:
            log.debug("%s: inexact seek to %dms (landed at %s); rewinding", self.path, target_ms, t)
            self._rewind()
            return

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> OpenCVReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
