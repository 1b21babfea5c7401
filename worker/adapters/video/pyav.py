"""FrameSource over PyAV: finds keyframes by demuxing (no decoding) and decodes only what the read plan needs.

Packets arrive in decode order. Each keyframe opens an *interval*; until one of its frames is needed the
interval's packets are only buffered (``skip``/``seek``/``keyframes``), so intervals without a target are
never decoded. H.264 frames that no other frame references are dropped unless kept. Frames keep their true
PTS; the frame kept for a target is the first at or after it, or — with a keyframe tolerance — the nearest
keyframe within it.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
from collections import deque
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from worker.adapters.files import check_file
from worker.adapters.video import probes, pyav_probe
from worker.adapters.video.opencv import build_info, check_stream
from worker.adapters.video.pyav_probe import _FFMPEG_ERRORS, decoder_threads, h264_nonref
from worker.config_sections import LimitSettings
from worker.core.models import VideoInfo
from worker.core.readplan import (
    ReadPlan,
    Strategy,
    StreamFacts,
    exact_key_cover,
    plan_for,
    tolerance_ms,
)
from worker.errors import DecodeError, VideoOpenError

log = logging.getLogger(__name__)

MAX_BAD_PACKETS = 50  # consecutive undecodable packets before the stream counts as broken


class PyAVReader:
    """One open video. Not thread-safe: one reader per thread or task."""

    backend = "pyav"

    def __init__(self, path: str | Path, limits: LimitSettings | None = None, *, keyframe_tolerance: float = 0.0):
        self.path = Path(path)
        self.limits = limits or LimitSettings()
        self.keyframe_tolerance = keyframe_tolerance
        self._size = check_file(self.path, self.limits)
        self._container: Any = None
        self._stream: Any = None
        self._info: VideoInfo | None = None
        self._facts: StreamFacts | None = None
        self._tb = Fraction(1, 1000)
        self._tb_s = 0.001  # float(time base): PTS -> ms computed as OpenCV does, (pts - start) * tb * 1000
        self._start = 0
        self._frame_ms = 40.0
        self._nal_length: int | None = None  # None: cannot tell droppable frames for this codec
        self._index_keys: list[float] = []  # keyframe times from the container index (decode times)
        self._key_pts: list[float] = []  # the same, as presentation times (estimated)
        self.last_plan: ReadPlan | None = None
        self.passed = 0  # frames gone by without being yielded (passed over, never decoded, sought past)
        self._reset()

    # -- state ---------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._packets: Iterator[Any] | None = None
        self._peeked: Any = None
        self._gop: list[Any] = []  # later packets of the current keyframe interval, not decoded yet
        self._gop_bytes = 0
        self._gop_key: Any = None  # the keyframe packet that opened the interval
        self._gop_key_ms: float | None = None
        self._gop_key_fed = False
        self._gop_max_ms = -math.inf
        self._active = False  # decode this interval's packets as they arrive
        self._ready: deque[Any] = deque()  # decoded frames not handed out yet
        self._fed_max_ms = -math.inf  # latest packet given to the decoder since it was last emptied
        self._consumed_ms = -math.inf  # frames up to here are gone without a seek
        self._demux_ms = -math.inf
        self._eof = False
        self._drained = False  # the decoder saw the end of the stream
        self._broken = False  # the demuxer stopped on damage, not at the end
        self._bad = 0

    # -- opening and probing -------------------------------------------------------------------
    def _open(self) -> None:
        self.close()
        try:
            container = av.open(str(self.path), mode="r", metadata_errors="ignore")
        except _FFMPEG_ERRORS:
            raise VideoOpenError(
                f"{self.path}: not a video PyAV/FFmpeg can open (wrong format, corrupt or not a video)"
            ) from None
        streams = [s for s in container.streams.video if not (int(s.disposition) & 0x400)]  # not cover art
        if not streams:
            container.close()
            raise VideoOpenError(f"{self.path}: no video stream (is it audio only?)")
        stream = streams[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = decoder_threads()
        self._container, self._stream = container, stream
        self._tb = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1000)
        self._tb_s = float(self._tb)
        self._start = int(stream.start_time or 0)
        self._reset()

    def probe(self) -> VideoInfo:
        if self._info is not None:
            return self._info
        self._open()
        stream = self._stream
        ctx = stream.codec_context
        rate = stream.guessed_rate or stream.average_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        tag = str(ctx.codec_tag or "").strip("\x00 ")
        codec = tag if len(tag) == 4 and tag.isprintable() else str(ctx.name or "unknown")
        check_stream(self.path, fps, width, height, self.limits)
        self._frame_ms = 1000 / fps
        if ctx.name == "h264":
            extra = bytes(ctx.extradata or b"")
            self._nal_length = (extra[4] & 3) + 1 if len(extra) > 4 and extra[0] == 1 else 0
        memo = probes.key(self.backend, self.path, self.limits)
        known = probes.recall(memo)
        if known is not None:  # probed before in this process: no second demux of the head and the tail
            self._facts, self._index_keys, self._key_pts, self._info = known
            return self._info
        self._facts = self._measure_facts(fps)
        claimed_ms = pyav_probe.claimed_ms(self)
        duration_ms = pyav_probe.true_duration_ms(self, claimed_ms)
        self._info = build_info(self.path, self.limits, duration_ms, claimed_ms, fps, width, height, codec, self._size)
        probes.remember(memo, (self._facts, self._index_keys, self._key_pts, self._info))
        return self._info

    def _measure_facts(self, fps: float) -> StreamFacts:
        """Keyframe spacing and droppable share from the first packets (``pyav_probe.measure_facts``)."""
        return pyav_probe.measure_facts(self, fps)

    def facts(self) -> StreamFacts:
        """Keyframe spacing and droppable share, from the container index or the first packets."""
        self.probe()
        assert self._facts is not None
        return self._facts

    # -- low level ---------------------------------------------------------------------------
    def _pkt_ms(self, pkt: Any) -> float | None:
        ts = pkt.pts if pkt.pts is not None else pkt.dts
        return None if ts is None else (ts - self._start) * self._tb_s * 1000.0

    def _frame_ms_of(self, frame: Any) -> float:
        ts = frame.pts if frame.pts is not None else frame.dts
        if ts is None:
            return self._consumed_ms + self._frame_ms
        return float((ts - self._start) * self._tb_s * 1000.0)

    def _next_packet(self) -> Any:
        if self._peeked is not None:
            pkt, self._peeked = self._peeked, None
            return pkt
        if self._eof:
            return None
        if self._packets is None:
            self._packets = self._container.demux(self._stream)
        while True:
            try:
                pkt = next(self._packets)
            except StopIteration:
                self._eof = True
                return None
            except _FFMPEG_ERRORS as exc:
                log.debug("%s: demuxing stopped after %.2fs: %s", self.path, max(0.0, self._demux_ms) / 1000, exc)
                self._eof = self._broken = True
                return None
            if pkt.size == 0:
                continue  # the demuxer's closing flush packet
            ms = self._pkt_ms(pkt)
            if ms is not None and ms > self._demux_ms:
                self._demux_ms = ms
            return pkt

    def _droppable(self, pkt: Any) -> bool:
        if self._nal_length is None or pkt.is_keyframe:
            return False
        try:
            return h264_nonref(memoryview(pkt), self._nal_length)
        except (IndexError, ValueError, TypeError):
            return False

    def _seek_raw(self, ms: float) -> bool:
        """Position the demuxer at the keyframe before ``ms``; False when the container cannot seek."""
        ts = int((Fraction(max(0.0, ms)) / 1000) / self._tb) + self._start
        try:
            self._container.seek(ts, backward=True, any_frame=False, stream=self._stream)
            self._stream.codec_context.flush_buffers()
        except _FFMPEG_ERRORS:
            return False
        self._reset()
        return True

    def _seek(self, ms: float) -> None:
        """Seek so the first frame at or after ``ms`` can be decoded; rewinds when the seek overshoots."""
        margin = 3 * self._frame_ms  # a keyframe's PTS may trail its DTS (the index time) by a few frames
        if ms - margin <= 0 or not self._seek_raw(ms - margin):
            self._open()
            self._consumed_ms = -math.inf
            return
        first = self._next_packet()
        first_ms = self._pkt_ms(first) if first is not None else None
        if first is None or (first_ms is not None and first_ms > ms + self._frame_ms / 2):
            log.debug("%s: seek to %.0fms landed at %s; rewinding", self.path, ms, first_ms)
            self._open()
            self._consumed_ms = -math.inf
            return
        self._peeked = first
        self._consumed_ms = (first_ms if first_ms is not None else ms) - 0.5

    def _decode(self, pkt: Any) -> None:
        ms = self._pkt_ms(pkt)
        if ms is not None and ms > self._fed_max_ms:
            self._fed_max_ms = ms
        try:
            frames = self._stream.codec_context.decode(pkt)
        except _FFMPEG_ERRORS as exc:
            self._bad += 1
            log.debug("%s: undecodable packet: %s", self.path, exc)
            if self._bad > MAX_BAD_PACKETS:
                at = max(0, round(self._demux_ms))
                raise DecodeError(
                    f"{self._bad} packets in a row cannot be decoded near {at / 1000:.2f}s", at_ms=at
                ) from None
            return
        self._bad = 0
        self._ready.extend(frames)

    def _empty_decoder(self, at_eof: bool) -> None:
        """Take every frame still inside the decoder (its threads hold a few); it then restarts at a keyframe."""
        try:
            self._ready.extend(self._stream.codec_context.decode(None))
        except _FFMPEG_ERRORS as exc:
            log.debug("%s: draining the decoder failed: %s", self.path, exc)
        self._fed_max_ms = -math.inf
        if at_eof:
            self._drained = True
            return
        try:
            self._stream.codec_context.flush_buffers()
        except _FFMPEG_ERRORS:
            self._drained = True
        self._gop_key_fed = False  # the interval's keyframe must be decoded again before its other frames

    def interval_end_ms(self, key_ms: float) -> float:
        """Earliest time the keyframe interval opened at ``key_ms`` may end (the next keyframe)."""
        if self._index_keys:
            i = bisect.bisect_right(self._index_keys, key_ms)
            if i < len(self._index_keys):
                return self._index_keys[i]
            if self._index_keys[-1] > self._demux_ms:
                return math.inf
        g = self._facts.keyframe_interval_ms if self._facts else None
        return key_ms + 1.5 * g if g else math.inf

    def _to_bgr(self, frame: Any) -> np.ndarray:
        image: np.ndarray = frame.to_ndarray(format="bgr24")
        return image

    def close(self) -> None:
        if self._container is not None:
            with contextlib.suppress(*_FFMPEG_ERRORS):
                self._container.close()
            self._container = None
            self._stream = None

    def __enter__(self) -> PyAVReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sampling ----------------------------------------------------------------------------
    def plan(
        self, targets_ms: Sequence[int], strategy: Strategy | None = None, tolerance: int | None = None
    ) -> ReadPlan:
        """The read plan for these targets (``tolerance`` in ms overrides the reader's keyframe tolerance)."""
        tol = tolerance if tolerance is not None else tolerance_ms(targets_ms, self.keyframe_tolerance)
        facts = self.facts()
        return plan_for(facts, targets_ms, tol, ("pyav",), strategy, exact_cover=self.exact_cover(targets_ms))

    def exact_cover(self, targets_ms: Sequence[int]) -> float:
        """1.0 when every target looked at has a keyframe of the container's index as its exact frame, else 0:
        the keyframe path is taken without a tolerance only when keyframes fall on the targets (a mix of
        keyframes and decoded intervals is what the tolerance setting is for)."""
        self.probe()
        return 1.0 if exact_key_cover(targets_ms, self._key_pts, self._frame_ms) >= 1.0 else 0.0

    def frames(
        self,
        targets_ms: Sequence[int],
        *,
        strategy: Strategy | None = None,
        tolerance: int | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(pts_ms, bgr)`` per target (increasing): the first frame at or after it (1 ms of rounding
        allowed), or with a tolerance the nearest keyframe within it. A frame serves every target up to its
        own time. Raises DecodeError with the time where decoding stopped if the stream breaks early."""
        if not targets_ms:
            return
        info = self.probe()
        plan = self.plan(targets_ms, strategy, tolerance)
        self.last_plan = plan
        from worker.adapters.video.pyav_run import Run  # the decoding state of one call

        yield from Run(self, targets_ms, plan, info).frames()
