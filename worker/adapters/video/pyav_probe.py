"""What opening a video with PyAV finds out before any frame is decoded for a target: FFmpeg's decoder thread
count, which H.264 packets no other frame references, and the probe's measurements — keyframe spacing and
droppable share from the first packets, keyframe times from the container index, the true duration from
the last packets (a lying header is measured). ``PyAVReader`` (pyav.py) calls these with itself."""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import TYPE_CHECKING

import av
import av.error

from worker.core.readplan import StreamFacts, median_interval
from worker.errors import VideoOpenError

if TYPE_CHECKING:
    from worker.adapters.video.pyav import PyAVReader

log = logging.getLogger("worker.adapters.video.pyav")

FACTS_PACKETS = 600  # packets demuxed when probing: keyframe spacing and droppable frames
INDEX_ENTRIES = 1_000_000  # index entries read for keyframe times (beyond: estimated from their spacing)
_FFMPEG_ERRORS = (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError)


MAX_DECODER_THREADS = 16  # FFmpeg warns above 16 frame threads


def decoder_threads() -> int:
    """FFmpeg decoder threads: two per CPU this process may run on, at most 16. With a CPU hog on one of two
    cores 4 threads read goal 2's long-GOP video in 0.64 of ffmpeg's time against 0.74 with 2 (issue 19, goal 6):
    a thread that is descheduled holds one frame, not half of them. Quiet, 2, 3 and 4 threads were level."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_DECODER_THREADS, 2 * cpus))


def h264_nonref(data: memoryview, nal_length: int) -> bool:
    """True when every picture slice in an H.264 access unit has nal_ref_idc 0 (nothing refers to it).

    ``nal_length`` is the AVCC length-field size (1, 2 or 4); 0 means Annex B start codes."""
    slices = 0
    if nal_length:
        i, end = 0, len(data)
        while i + nal_length < end:
            size = int.from_bytes(data[i : i + nal_length], "big")
            header = data[i + nal_length]
            if header & 0x1F in (1, 5):
                if header & 0x60:
                    return False
                slices += 1
            i += nal_length + size
        return slices > 0
    raw = bytes(data)
    i = raw.find(b"\x00\x00\x01")
    while 0 <= i < len(raw) - 3:
        header = raw[i + 3]
        if header & 0x1F in (1, 5):
            if header & 0x60:
                return False
            slices += 1
        i = raw.find(b"\x00\x00\x01", i + 3)
    return slices > 0


def measure_facts(reader: PyAVReader, fps: float) -> StreamFacts:
    """Demux the first packets (decoding only up to the first frame, which must exist)."""
    keys: list[float] = []
    nonref = total = 0
    first_frame = False
    deadline = time.monotonic() + reader.limits.decode_timeout_s
    while total < FACTS_PACKETS or not first_frame:
        pkt = reader._next_packet()
        if pkt is None or time.monotonic() > deadline:
            break
        total += 1
        ms = reader._pkt_ms(pkt)
        if pkt.is_keyframe and ms is not None:
            keys.append(ms)
        if reader._droppable(pkt):
            nonref += 1
        if not first_frame:
            try:
                first_frame = bool(reader._stream.codec_context.decode(pkt))
            except _FFMPEG_ERRORS:
                continue
    if not first_frame:
        try:
            first_frame = bool(reader._stream.codec_context.decode(None))
        except _FFMPEG_ERRORS:
            first_frame = False
    if not first_frame:
        raise VideoOpenError(f"{reader.path}: the video has no decodable frames")
    indexed = reader._index_keys = sorted(index_keyframes(reader))
    # the index holds decode times: shifted onto presentation times by the first keyframe's packet
    shift = keys[0] - indexed[0] if keys and indexed else 0.0
    reader._key_pts = [k + shift for k in indexed]
    interval = median_interval(indexed) if len(indexed) >= 2 else median_interval(keys)
    if interval is None and keys and total >= FACTS_PACKETS:
        interval = total * 1000 / fps  # one keyframe in the window: at least this far apart
    reader._open()  # start reading from the beginning again
    return StreamFacts(fps=fps, keyframe_interval_ms=interval, nonref_fraction=nonref / max(1, total))


def index_keyframes(reader: PyAVReader) -> list[float]:
    """Keyframe times from the container's index (MP4/MOV/MKV), without reading any packet."""
    try:
        entries = itertools.islice(reader._stream.index_entries, INDEX_ENTRIES)
        return [(e.timestamp - reader._start) * reader._tb_s * 1000.0 for e in entries if e.is_keyframe]
    except (AttributeError, *_FFMPEG_ERRORS):
        return []


def claimed_ms(reader: PyAVReader) -> float:
    stream = reader._stream
    if stream.duration:
        return float(stream.duration * reader._tb * 1000)
    if reader._container.duration:
        return float(reader._container.duration / 1000)
    return 0.0


def true_duration_ms(reader: PyAVReader, claimed: float) -> int:
    """Header duration, checked by demuxing its last packets; a lying header is measured instead."""
    if claimed > 0:
        last = last_pts_from(reader, claimed - 3 * reader._frame_ms)
        if last is not None and last >= claimed - 2000:
            reader._open()
            return round(last + reader._frame_ms)
        log.warning("%s: header claims %.1fs; measuring the real length", reader.path, claimed / 1000)
    last = last_pts_from(reader, None)
    reader._open()
    return round((last if last is not None else 0.0) + reader._frame_ms)


def last_pts_from(reader: PyAVReader, ms: float | None) -> float | None:
    reader._open()
    if ms is not None and not reader._seek_raw(ms):
        return None
    last: float | None = None
    deadline = time.monotonic() + reader.limits.decode_timeout_s
    while (pkt := reader._next_packet()) is not None:
        t = reader._pkt_ms(pkt)
        if t is not None and (last is None or t > last):
            last = t
        if time.monotonic() > deadline:
            raise VideoOpenError(f"{reader.path}: measuring its length took longer than the decode limit")
    return last
