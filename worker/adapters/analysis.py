"""One streaming analysis pass: cuts (PySceneDetect), motion (MOG2) and a DCT pHash per frame.

Frames come from the reader at the analysis rate with their true PTS; each is reduced to a few numbers
(a ``Sample``) and dropped, so memory stays flat however long the video is.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from fractions import Fraction
from typing import Any, overload

import cv2
import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector
from scenedetect.common import FrameTimecode, Timecode

from worker.adapters.video import VideoReader, decoder_of
from worker.config import SamplingSettings
from worker.core.ports import FrameKeeper
from worker.core.segmenters import Findings, MotionParams, Sample, collect
from worker.errors import DecodeError

log = logging.getLogger(__name__)

SCENE_WIDTH = 256  # PySceneDetect downscales to about this width too
MOTION_WIDTH = 160
MIN_SCENE_S = 0.4  # the detector's own minimum shot length (flash suppression)
MS = Fraction(1, 1000)


def phash(image: np.ndarray) -> int:
    """64-bit DCT perceptual hash: 32x32 grey, low 8x8 DCT coefficients against their median."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8]
    bits = (low > np.median(low)).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _resize(image: np.ndarray, width: int) -> np.ndarray:
    """Downscale to ``width``: bilinear to twice that, then an exact 2:1 area step. INTER_AREA at an
    odd ratio costs ~20 ms a 1080p frame; this costs ~1 ms and still averages neighbouring pixels."""
    h, w = image.shape[:2]
    if w <= width:
        return image
    if w > 2 * width:
        image = cv2.resize(image, (2 * width, max(2, round(h * 2 * width / w))), interpolation=cv2.INTER_LINEAR)
        h, w = image.shape[:2]
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


class FrameAnalyser:
    """Scores frames one at a time. Not thread-safe; one per pass."""

    def __init__(self, sampling: SamplingSettings, source_fps: float) -> None:
        self.rate = Fraction(source_fps).limit_denominator(1001)
        if sampling.scene_detector == "adaptive":
            self.detector: Any = AdaptiveDetector(
                adaptive_threshold=sampling.adaptive_threshold, min_scene_len=MIN_SCENE_S
            )
        else:
            self.detector = ContentDetector(threshold=sampling.scene_threshold, min_scene_len=MIN_SCENE_S)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._mog: Any = None
        self._last: FrameTimecode | None = None

    def _timecode(self, t_ms: int) -> FrameTimecode:
        return FrameTimecode(Timecode(pts=t_ms, time_base=MS), fps=self.rate)

    def _reset_motion(self) -> None:
        self._mog = cv2.createBackgroundSubtractorMOG2(history=500, varThreshold=16, detectShadows=False)

    def analyse(self, t_ms: int, image: np.ndarray) -> Sample:
        small = _resize(image, SCENE_WIDTH)
        tc = self._timecode(t_ms)
        self._last = tc
        cuts = tuple(round(c.seconds * 1000) for c in self.detector.process_frame(tc, small))
        grey = cv2.GaussianBlur(cv2.cvtColor(_resize(small, MOTION_WIDTH), cv2.COLOR_BGR2GRAY), (5, 5), 0)
        if self._mog is None or cuts:  # a new shot is a new background: no motion spike at cuts
            self._reset_motion()
            self._mog.apply(grey, learningRate=1.0)
            return Sample(t_ms, 0.0, cuts)
        mask = cv2.morphologyEx(self._mog.apply(grey), cv2.MORPH_OPEN, self._kernel)
        return Sample(t_ms, float(np.count_nonzero(mask)) / mask.size, cuts)

    def finish(self) -> tuple[int, ...]:
        """Cuts a detector still holds back (adaptive window) once the frames are over."""
        if self._last is None:
            return ()
        return tuple(round(c.seconds * 1000) for c in self.detector.post_process(self._last) or [])


def analyse_frames(
    frames: Iterable[tuple[int, np.ndarray]], analyser: FrameAnalyser, keep: Keep | None = None
) -> Iterator[Sample]:
    """One ``Sample`` per frame, then (if any) a final one carrying the detector's late cuts. ``keep`` sees
    every frame with the cuts its analysis reported (the hand-over to the segments)."""
    last = None
    for t_ms, image in frames:
        last = t_ms
        sample = analyser.analyse(t_ms, image)
        if keep is not None:
            keep(t_ms, image, sample.cuts_ms)
        yield sample
    late = analyser.finish()
    if late and last is not None:
        if keep is not None:
            keep(last, None, late)
        yield Sample(last, 0.0, late)


Keep = Callable[[int, "np.ndarray | None", tuple[int, ...]], None]


def follower(reader: Any, start_ms: int, keeper: FrameKeeper) -> Keep:
    """Offers each analysed frame to ``keeper`` with the first target it is the exact frame of: the pass's
    start for its first frame, else the previous frame's time + 2 when the reader passed no frame between
    them (``passed``), else None. Only meaningful when the pass decodes every frame (a stride of 1)."""
    prev: list[int] = []  # [time of the previous frame, the reader's passed count then]
    decoder: list[str] = []

    def keep(t_ms: int, image: np.ndarray | None, cuts: tuple[int, ...]) -> None:
        if not decoder:
            decoder.append(decoder_of(reader))  # the pass is one frames() call: one backend
        if image is None:
            keeper.offer(t_ms, None, None, cuts, decoder[0])
            return
        now = reader.passed
        lo = start_ms if not prev else (prev[0] + 2 if now == prev[1] else None)
        prev[:] = [t_ms, now]
        keeper.offer(t_ms, image, lo, cuts, decoder[0])

    return keep


class Grid(Sequence[int]):
    """``sample_times(start, end, fps)`` as a lazy sequence: O(1) memory for any length."""

    def __init__(self, start_ms: int, end_ms: int, fps: Fraction) -> None:
        self.start, self.fps = start_ms, fps
        n = max(0, math.ceil(Fraction(end_ms - start_ms) * fps / 1000))
        while n > 0 and self._at(n - 1) >= end_ms:
            n -= 1
        self.n = n

    def _at(self, k: int) -> int:
        return self.start + round(Fraction(1000 * k) / self.fps)

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, k: int) -> int: ...
    @overload
    def __getitem__(self, k: slice) -> Sequence[int]: ...
    def __getitem__(self, k: int | slice) -> int | Sequence[int]:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self.n))]
        if k < 0:
            k += self.n
        if not 0 <= k < self.n:
            raise IndexError(k)
        return self._at(k)


def analysis_rate(source_fps: float, sampling: SamplingSettings) -> Fraction:
    """Every source frame, thinned to at most ``analysis_max_fps`` (a whole-number stride)."""
    stride = max(1, math.ceil(source_fps / sampling.analysis_max_fps - 1e-9))
    return Fraction(source_fps).limit_denominator(1001) / stride


def analyse_video(
    reader: VideoReader,
    start_ms: int,
    end_ms: int,
    sampling: SamplingSettings,
    motion: MotionParams,
    keeper: FrameKeeper | None = None,
) -> Findings:
    """Decode ``[start, end)`` once at the analysis rate and fold it into cuts and activity events.
    ``keeper`` is offered the frames when every frame is analysed and the reader counts what it passes.

    A stream that breaks early is logged and analysed up to where it broke (``until_ms``)."""
    info = reader.probe()
    analyser = FrameAnalyser(sampling, info.fps)
    rate = analysis_rate(info.fps, sampling)
    every = rate == Fraction(info.fps).limit_denominator(1001) and hasattr(reader, "passed")
    keep = follower(reader, start_ms, keeper) if keeper is not None and every else None
    broke: list[DecodeError] = []

    def frames() -> Iterator[tuple[int, np.ndarray]]:
        try:
            yield from reader.frames(Grid(start_ms, end_ms, rate))
        except DecodeError as exc:
            broke.append(exc)
            log.warning("%s: analysis stopped early: %s", reader.path, exc.message)

    findings = collect(analyse_frames(frames(), analyser, keep), motion, start_ms, end_ms)
    return findings if broke else replace(findings, until_ms=end_ms)


class CvAnalyser:
    """The ``Analyser`` port: OpenCV/PySceneDetect analysis pass and pHash."""

    def __init__(self, sampling: SamplingSettings) -> None:
        self.sampling = sampling

    def analyse(
        self, reader: Any, start_ms: int, end_ms: int, motion: MotionParams, keeper: FrameKeeper | None = None
    ) -> Findings:
        return analyse_video(reader, start_ms, end_ms, self.sampling, motion, keeper)

    def phash(self, thumb: np.ndarray) -> int:
        return phash(thumb)
