"""Synthetic media for tests and benchmarks: truthful videos plus hostile and broken files.

Everything is generated (never committed) and deterministic given ``seed``. ffmpeg is used when it is
on PATH; without it the functions that need it raise ``FfmpegMissing`` (tests skip on it) and
``make_video`` falls back to ``cv2.VideoWriter``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, NamedTuple

import cv2
import numpy as np
from numpy.typing import NDArray

Frame = NDArray[np.uint8]
Codec = Literal["mp4v", "libx264", "MJPG"]

OBJECT_BGR = (255, 255, 255)


class FfmpegMissing(RuntimeError):
    """ffmpeg/ffprobe is not on PATH."""


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def _ffmpeg(args: Sequence[str], frames: Iterable[Frame] = ()) -> None:
    """Run ffmpeg, streaming ``frames`` (raw BGR) to its stdin one at a time."""
    if not have_ffmpeg():
        raise FfmpegMissing("ffmpeg is not installed")
    cmd = ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error", "-y", *args]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        assert proc.stdin is not None
        try:
            for frame in frames:
                proc.stdin.write(frame.tobytes())
        except BrokenPipeError:
            pass  # ffmpeg exited early; its stderr says why
        finally:
            proc.stdin.close()
        if proc.wait() != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} failed: {err.read().decode(errors='replace')}")


def ffprobe(path: str | os.PathLike[str], *extra: str) -> dict[str, Any]:
    """``ffprobe -show_format -show_streams`` (plus ``extra`` flags) as parsed JSON."""
    if not have_ffmpeg():
        raise FfmpegMissing("ffprobe is not installed")
    cmd = ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", *extra, str(path)]
    out = subprocess.run(cmd, capture_output=True, check=False, timeout=60)
    return json.loads(out.stdout or b"{}")  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------- truthful videos


@dataclass(frozen=True)
class VideoTruth:
    """What a generated video holds; frame ``i`` is shown at ``i / fps`` seconds."""

    path: Path
    seconds: float
    fps: float
    size: tuple[int, int]  # (width, height)
    frame_count: int
    cuts_at: tuple[float, ...]
    motion_events: tuple[tuple[float, float], ...]
    codec: str = "mp4v"
    static: bool = False  # no always-moving object (only the motion events move, if any)
    noise: int = 0  # +-grey levels of per-frame uniform noise

    @property
    def cut_frames(self) -> tuple[int, ...]:
        """Index of the first frame of each new shot (``round(cut_s * fps)``)."""
        return tuple(round(c * self.fps) for c in self.cuts_at)

    @property
    def event_frames(self) -> tuple[range, ...]:
        """Frame ranges in which the event object is drawn and moves."""
        return tuple(range(round(s * self.fps), round(e * self.fps)) for s, e in self.motion_events)

    def changes_at(self, i: int) -> bool:
        """True when frame ``i`` differs from frame ``i - 1`` in the rendered (pre-codec) pixels."""
        if self.noise or i in self.cut_frames:
            return True
        if not self.motion_events:
            return not self.static
        return any(i in r or i == r.stop for r in self.event_frames if len(r))


def _shot_background(shot: int, size: tuple[int, int], seed: int) -> Frame:
    """Solid colour (hue far from the previous shot's) plus a 16-px block texture unique to the shot."""
    w, h = size
    hue = (seed * 37 + shot * 67) % 180
    val = 200 if shot % 2 == 0 else 110
    base = cv2.cvtColor(np.array([[[hue, 200, val]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(np.int16)
    rng = np.random.default_rng([seed, shot])
    blocks = rng.integers(-24, 25, size=(h // 16 + 1, w // 16 + 1, 1), dtype=np.int16)
    texture = np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1)[:h, :w]
    out: Frame = np.clip(base + texture, 0, 255).astype(np.uint8)
    return out


def _pingpong(step: int, span: int, speed: int) -> int:
    """Position after ``step`` moves of odd ``speed`` bouncing in [0, span]; never repeats consecutively."""
    if span <= 0:
        return 0
    period = 2 * span
    x = (step * speed) % period
    return x if x <= span else period - x


def _object_box(size: tuple[int, int], step: int, lane: int) -> tuple[int, int, int, int]:
    w, h = size
    side = max(1, min(w, h) // 4)
    speed = max(1, (w - side) // 40) | 1  # odd, so bounces never land on the previous position
    x = _pingpong(step, w - side, speed)
    y = (h - side) * (1 + lane % 3) // 4
    return x, y, side, side


def _render(truth: VideoTruth, seed: int) -> Iterator[Frame]:
    cuts = truth.cut_frames
    events = truth.event_frames
    backgrounds: dict[int, Frame] = {}
    for i in range(truth.frame_count):
        shot = sum(1 for c in cuts if c <= i)
        if shot not in backgrounds:
            backgrounds = {shot: _shot_background(shot, truth.size, seed)}
        frame = backgrounds[shot].copy()
        if truth.motion_events:
            for k, r in enumerate(events):
                if i in r:
                    x, y, bw, bh = _object_box(truth.size, i - r.start, seed + k)
                    frame[y : y + bh, x : x + bw] = OBJECT_BGR
        elif not truth.static:
            x, y, bw, bh = _object_box(truth.size, i, seed + shot)
            cv2.circle(frame, (x + bw // 2, y + bh // 2), max(1, bw // 2), OBJECT_BGR, -1)
        if truth.noise:
            rng = np.random.default_rng([seed, shot, i, 7])
            jitter = rng.integers(-truth.noise, truth.noise + 1, frame.shape, dtype=np.int16)
            frame = np.clip(frame.astype(np.int16) + jitter, 0, 255).astype(np.uint8)
        yield frame


def _rate(fps: float) -> str:
    return str(Fraction(fps).limit_denominator(1001))


_X264 = ["-c:v", "libx264", "-preset", "veryfast"]
_CLEAN = ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact"]  # no dates or versions


def _raw_input(size: tuple[int, int], fps: float) -> list[str]:
    return ["-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{size[0]}x{size[1]}", "-r", _rate(fps), "-i", "-"]


def _write_ffmpeg(
    path: Path, frames: Iterator[Frame], size: tuple[int, int], fps: float, gop: int | None, faststart: bool
) -> None:
    w, h = size
    pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"  # 4:2:0 needs even dimensions
    args = [*_raw_input(size, fps), *_X264, "-crf", "18", "-pix_fmt", pix_fmt, *_CLEAN]
    if gop is not None:
        args += ["-g", str(gop)]
    if faststart:
        args += ["-movflags", "+faststart"]
    _ffmpeg([*args, str(path)], frames)


def _write_cv2(path: Path, frames: Iterator[Frame], size: tuple[int, int], fps: float, fourcc: str) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter refused {fourcc} {size} for {path}")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()


def make_video(
    path: str | os.PathLike[str],
    *,
    seconds: float,
    fps: float = 30.0,
    size: tuple[int, int] = (320, 240),
    cuts_at: Sequence[float] = (),
    motion_events: Sequence[tuple[float, float]] = (),
    codec: Codec = "mp4v",
    gop: int | None = None,
    seed: int = 0,
    static: bool = False,
    noise: int = 0,
    faststart: bool = False,
) -> VideoTruth:
    """Write ``round(seconds * fps)`` frames of ``size`` (w, h) and return what they hold.

    Shots: each cut in ``cuts_at`` starts a new shot at frame ``round(cut * fps)``; each shot has its own
    solid colour (hue 134 degrees from the previous one, alternating bright/dark) plus a 16-px block
    texture, so every cut is a hard, whole-frame change. Without ``motion_events`` a white disc
    (side = min(w, h) / 4) bounces left-right by an odd number of pixels every frame (every frame
    differs) unless ``static``. With ``motion_events`` the camera is still: frames outside the
    [start, end) events are identical within a shot, and during an event a white square moves every
    frame. ``noise`` adds uniform +-``noise`` per-frame noise everywhere (mp4v and MJPG smooth
    away up to +-4; libx264 at crf 18 keeps +-2). ``codec``: "libx264" pipes raw BGR into ffmpeg
    (``-g gop``, crf 18, yuv420p, yuv444p for odd sizes, ``faststart`` puts moov first) and falls back
    to "mp4v" without ffmpeg; "mp4v" and "MJPG" (use an .avi path) use ``cv2.VideoWriter``, ignoring gop.
    """
    out = Path(path)
    if codec == "libx264" and not have_ffmpeg():
        codec = "mp4v"
    truth = VideoTruth(
        out,
        seconds,
        fps,
        (int(size[0]), int(size[1])),
        round(seconds * fps),
        tuple(float(c) for c in cuts_at),
        tuple((float(s), float(e)) for s, e in motion_events),
        codec,
        static,
        noise,
    )
    frames = _render(truth, seed)
    if codec == "libx264":
        _write_ffmpeg(out, frames, truth.size, fps, gop, faststart)
    else:
        _write_cv2(out, frames, truth.size, fps, codec)
    return truth


def make_lavfi_video(
    path: str | os.PathLike[str],
    *,
    seconds: float,
    size: tuple[int, int] = (1280, 720),
    fps: float = 30,
    gop: int = 250,
    source: str = "testsrc2",
) -> VideoTruth:
    """H.264 (yuv420p, ``-g gop``) of ffmpeg's lavfi ``source`` pattern; moves everywhere, no cuts."""
    w, h = size
    spec = f"{source}=size={w}x{h}:rate={_rate(fps)}:duration={seconds}"
    _ffmpeg(["-f", "lavfi", "-i", spec, *_X264, "-g", str(gop), "-pix_fmt", "yuv420p", *_CLEAN, str(path)])
    return VideoTruth(Path(path), seconds, float(fps), (w, h), round(seconds * fps), (), ((0.0, seconds),), "libx264")


def vfr_video(
    path: str | os.PathLike[str],
    *,
    seconds: float = 4.0,
    rates: tuple[float, float] = (5.0, 30.0),
    size: tuple[int, int] = (160, 120),
    seed: int = 0,
) -> Path:
    """Variable frame rate H.264 MP4: the first ``seconds / 2`` at ``rates[0]``, the rest at ``rates[1]``.

    Frame ``n`` has pts ``n / r0`` for ``n < K = round(seconds / 2 * r0)``, else
    ``seconds / 2 + (n - K) / r1`` (timescale 90 kHz, passed through unchanged). Content is
    ``make_video``'s bouncing disc. Needs ffmpeg.
    """
    half = seconds / 2
    k = round(half * rates[0])
    n = k + round(half * rates[1])
    truth = VideoTruth(Path(path), seconds, rates[1], size, n, (), ())
    expr = f"if(lt(N\\,{k})\\,N/{rates[0]}\\,{half}+(N-{k})/{rates[1]})/TB"
    vfr = ["-vf", f"settb=1/90000,setpts={expr}", "-fps_mode", "passthrough", "-bf", "0"]
    args = [
        *_raw_input(size, rates[1]),
        *vfr,
        *_X264,
        "-pix_fmt",
        "yuv420p",
        "-video_track_timescale",
        "90000",
    ]
    _ffmpeg([*args, *_CLEAN, str(path)], _render(truth, seed))
    return Path(path)


# --------------------------------------------------------------------------------------- MP4 / RIFF walkers

_CONTAINERS = {
    b"moov",
    b"trak",
    b"mdia",
    b"minf",
    b"stbl",
    b"edts",
    b"dinf",
    b"udta",
    b"mvex",
    b"moof",
    b"traf",
    b"mfra",
}
_VISUAL_ENTRIES = {b"avc1", b"avc3", b"hvc1", b"hev1", b"mp4v", b"mjpa", b"av01", b"vp09"}


class Box(NamedTuple):
    """One ISO-BMFF box: ``data[offset:offset + size]``, payload from ``offset + header``."""

    type: str
    offset: int
    size: int
    header: int
    path: str  # e.g. "moov/trak/mdia/mdhd"


def iter_boxes(data: bytes | bytearray, start: int = 0, end: int | None = None, parent: str = "") -> Iterator[Box]:
    """Walk MP4 boxes depth-first (containers, ``stsd`` entries and visual sample entries included)."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return  # truncated or corrupt: stop rather than guess
        name = kind.decode("latin-1")
        path = f"{parent}/{name}" if parent else name
        yield Box(name, pos, size, header, path)
        body = pos + header
        if kind in _CONTAINERS:
            yield from iter_boxes(data, body, pos + size, path)
        elif kind == b"stsd":
            yield from iter_boxes(data, body + 8, pos + size, path)
        elif kind in _VISUAL_ENTRIES:
            yield from iter_boxes(data, body + 78, pos + size, path)
        pos += size


def find_boxes(data: bytes | bytearray, kind: str) -> list[Box]:
    return [b for b in iter_boxes(data) if b.type == kind]


def _full_box_fields(data: bytes | bytearray, box: Box) -> tuple[int, int]:
    """(version, payload offset after version/flags)."""
    return data[box.offset + box.header], box.offset + box.header + 4


def read_tkhd_size(data: bytes | bytearray) -> list[tuple[float, float]]:
    """(width, height) of every track header, decoded from 16.16 fixed point."""
    sizes = []
    for box in find_boxes(data, "tkhd"):
        version, p = _full_box_fields(data, box)
        off = p + (72 if version == 0 else 84)
        w, h = struct.unpack_from(">II", data, off)
        sizes.append((w / 65536, h / 65536))
    return sizes


def _read_time_header(data: bytes | bytearray, box: Box) -> tuple[int, int, int]:
    """mvhd/mdhd: (timescale, duration, offset of timescale)."""
    version, p = _full_box_fields(data, box)
    if version == 1:
        ts, dur = struct.unpack_from(">IQ", data, p + 16)
        return ts, dur, p + 16
    ts, dur = struct.unpack_from(">II", data, p + 8)
    return ts, dur, p + 8


def _write_duration(data: bytearray, box: Box, ts_off: int, value: int) -> None:
    if data[box.offset + box.header] == 1:
        struct.pack_into(">Q", data, ts_off + 4, min(value, 2**64 - 1))
    else:
        struct.pack_into(">I", data, ts_off + 4, min(value, 2**32 - 1))


class Chunk(NamedTuple):
    """One RIFF chunk; ``fourcc`` is the list type for LIST/RIFF."""

    fourcc: str
    offset: int
    size: int
    data_offset: int


def iter_riff_chunks(data: bytes | bytearray, start: int = 0, end: int | None = None) -> Iterator[Chunk]:
    """Walk RIFF/AVI chunks depth-first, descending into RIFF and LIST."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        cid, size = struct.unpack_from("<4sI", data, pos)
        if cid in (b"RIFF", b"LIST"):
            yield Chunk(data[pos + 8 : pos + 12].decode("latin-1"), pos, size, pos + 12)
            yield from iter_riff_chunks(data, pos + 12, min(end, pos + 8 + size))
        else:
            yield Chunk(cid.decode("latin-1"), pos, size, pos + 8)
        pos += 8 + size + (size & 1)


# --------------------------------------------------------------------------------------- hostile media


def _dst(src: Path, dst: str | os.PathLike[str] | None, tag: str) -> Path:
    return Path(dst) if dst is not None else src.with_name(f"{src.stem}.{tag}{src.suffix}")


def empty_file(path: str | os.PathLike[str]) -> Path:
    """A 0-byte file."""
    Path(path).write_bytes(b"")
    return Path(path)


def text_as_mp4(path: str | os.PathLike[str]) -> Path:
    """Plain UTF-8 text (no ``ftyp``) under whatever name is given, e.g. ``notes.mp4``."""
    Path(path).write_text("This is not a video.\n" * 20, encoding="utf-8")
    return Path(path)


def image_as_mp4(path: str | os.PathLike[str], size: tuple[int, int] = (320, 240), seed: int = 0) -> Path:
    """A baseline JPEG (starts ``FF D8 FF``) of one ``make_video`` frame, named e.g. ``photo.mp4``."""
    frame = _shot_background(0, size, seed)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    Path(path).write_bytes(buf.tobytes())
    return Path(path)


def truncated(src: str | os.PathLike[str], fraction: float, dst: str | os.PathLike[str] | None = None) -> Path:
    """The first ``int(size * fraction)`` bytes of ``src``.

    ffmpeg writes ``moov`` last unless faststart, so a cut default MP4 has no index at all; cut a
    ``faststart=True`` video to get a readable header with missing samples.
    """
    src = Path(src)
    data = src.read_bytes()
    out = _dst(src, dst, f"trunc{round(fraction * 100)}")
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def bit_flipped(
    src: str | os.PathLike[str],
    n_flips: int,
    seed: int = 0,
    dst: str | os.PathLike[str] | None = None,
    *,
    mdat_only: bool = True,
) -> Path:
    """``src`` with ``n_flips`` distinct random bits inverted (inside ``mdat`` payload when ``mdat_only``).

    Keeping the container intact makes the decoder, not the demuxer, meet the damage.
    """
    src = Path(src)
    data = bytearray(src.read_bytes())
    lo, hi = 0, len(data)
    mdat = find_boxes(data, "mdat") if mdat_only else []
    if mdat:
        lo, hi = mdat[0].offset + mdat[0].header, mdat[0].offset + mdat[0].size
    rng = np.random.default_rng(seed)
    for bit in rng.choice((hi - lo) * 8, size=min(n_flips, (hi - lo) * 8), replace=False):
        data[lo + int(bit) // 8] ^= 1 << (int(bit) % 8)
    out = _dst(src, dst, f"flip{n_flips}")
    out.write_bytes(bytes(data))
    return out


def single_frame_video(
    path: str | os.PathLike[str], *, size: tuple[int, int] = (320, 240), codec: Codec = "libx264"
) -> Path:
    """A valid video holding exactly one frame (shot 0 background and the disc), 30 fps."""
    return make_video(path, seconds=1 / 30, fps=30.0, size=size, codec=codec).path


def tiny_video(path: str | os.PathLike[str], *, seconds: float = 1.0, fps: float = 10.0) -> Path:
    """A 1x1 H.264 video (yuv444p: libx264 refuses 1x1 in 4:2:0); 2x2 mp4v without ffmpeg (cv2 refuses 1x1).

    Each frame is shot 0's background colour plus +-2 per-frame noise."""
    if have_ffmpeg():
        return make_video(path, seconds=seconds, fps=fps, size=(1, 1), codec="libx264", static=True, noise=2).path
    return make_video(path, seconds=seconds, fps=fps, size=(2, 2), codec="mp4v", static=True, noise=2).path


def panorama_video(
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] = (1024, 64),
    seconds: float = 1.0,
    fps: float = 10.0,
    codec: Codec = "libx264",
) -> Path:
    """A 16:1 strip (1024x64 by default) with the bouncing disc."""
    return make_video(path, seconds=seconds, fps=fps, size=size, codec=codec).path


def audio_only(path: str | os.PathLike[str], *, seconds: float = 2.0) -> Path:
    """An MP4 with a single AAC stream (440 Hz sine) and no video stream. Needs ffmpeg."""
    _ffmpeg(["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac", *_CLEAN, str(path)])
    return Path(path)


def zero_length_stream(path: str | os.PathLike[str], *, size: tuple[int, int] = (64, 48), fps: float = 10.0) -> Path:
    """An MJPG AVI (use an .avi path) whose header declares one video stream with 0 frames.

    An MP4 with no samples is not producible this way: both cv2 and ffmpeg then omit the track entirely.
    """
    _write_cv2(Path(path), iter(()), size, fps, "MJPG")
    return Path(path)


def fifo(path: str | os.PathLike[str]) -> Path:
    """A named pipe (POSIX only); opening it for reading blocks until a writer appears."""
    os.mkfifo(path)
    return Path(path)


# --------------------------------------------------------------------------------------- header patchers


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


class _BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, v: int, n: int) -> None:
        self.bits += [(v >> (n - 1 - i)) & 1 for i in range(n)]

    def ue(self, v: int) -> None:
        n = (v + 1).bit_length()
        self.u(0, n - 1)
        self.u(v + 1, n)

    def se(self, v: int) -> None:
        self.ue(2 * v - 1 if v > 0 else -2 * v)

    def to_bytes(self) -> bytes:
        bits = self.bits + [1] + [0] * (-(len(self.bits) + 1) % 8)  # rbsp stop bit + alignment
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def _unescape(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _escape(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def rewrite_sps_size(sps: bytes, width: int, height: int) -> bytes:
    """An H.264 SPS NAL (with its 1-byte header) re-encoded to declare ``width`` x ``height``."""
    rbsp = _unescape(sps[1:])
    last_one = len(rbsp) * 8 - 1 - ((rbsp[-1] & -rbsp[-1]).bit_length() - 1)  # the rbsp stop bit
    r, w = _BitReader(rbsp), _BitWriter()

    def copy_u(n: int) -> int:
        v = r.u(n)
        w.u(v, n)
        return v

    def copy_ue() -> int:
        v = r.ue()
        w.ue(v)
        return v

    def copy_se() -> None:
        w.se(r.se())

    profile = copy_u(8)
    copy_u(16)  # constraint flags + level
    copy_ue()  # seq_parameter_set_id
    chroma = 1
    if profile in _HIGH_PROFILES:
        chroma = copy_ue()
        if chroma == 3:
            copy_u(1)
        copy_ue()  # bit_depth_luma_minus8
        copy_ue()  # bit_depth_chroma_minus8
        copy_u(1)  # qpprime_y_zero_transform_bypass
        if copy_u(1):  # seq_scaling_matrix_present
            for i in range(8 if chroma != 3 else 12):
                if copy_u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            delta = r.se()
                            w.se(delta)
                            nxt = (last + delta + 256) % 256
                        last = nxt or last
    copy_ue()  # log2_max_frame_num_minus4
    poc_type = copy_ue()
    if poc_type == 0:
        copy_ue()
    elif poc_type == 1:
        copy_u(1)
        copy_se()
        copy_se()
        for _ in range(copy_ue()):
            copy_se()
    copy_ue()  # max_num_ref_frames
    copy_u(1)  # gaps_in_frame_num_allowed
    for _ in range(2):  # old pic_width_in_mbs_minus1, pic_height_in_map_units_minus1
        r.ue()
    frame_mbs_only = r.u(1)
    unit_x, unit_y = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}[chroma]
    unit_y *= 2 - frame_mbs_only
    mbs_w, mbs_h = -(-width // 16), -(-height // (16 * (2 - frame_mbs_only)))
    w.ue(mbs_w - 1)
    w.ue(mbs_h - 1)
    w.u(frame_mbs_only, 1)
    if not frame_mbs_only:
        copy_u(1)
    copy_u(1)  # direct_8x8_inference
    if r.u(1):
        for _ in range(4):  # old crop offsets
            r.ue()
    crop_r = (mbs_w * 16 - width) // unit_x
    crop_b = (mbs_h * 16 * (2 - frame_mbs_only) - height) // unit_y
    w.u(1 if crop_r or crop_b else 0, 1)
    if crop_r or crop_b:
        for v in (0, crop_r, 0, crop_b):  # left, right, top, bottom
            w.ue(v)
    while r.pos < last_one:  # VUI and anything else, unchanged
        copy_u(1)
    return sps[:1] + _escape(w.to_bytes())


def _resize_box(data: bytearray, box: Box, new_box: bytes) -> bytearray:
    """Replace ``box`` by ``new_box``, fixing every ancestor's size and, if moov precedes mdat, stco/co64."""
    delta = len(new_box) - box.size
    ancestors = [b for b in iter_boxes(data) if b.offset < box.offset < b.offset + b.size]
    out = data[: box.offset] + new_box + data[box.offset + box.size :]
    for a in ancestors:
        if a.header != 8:
            raise ValueError(f"64-bit size on {a.path} is not supported")
        struct.pack_into(">I", out, a.offset, a.size + delta)
    for b in iter_boxes(out):
        if b.type in ("stco", "co64"):
            _, p = _full_box_fields(out, b)
            (count,) = struct.unpack_from(">I", out, p)
            fmt = ">I" if b.type == "stco" else ">Q"
            step = struct.calcsize(fmt)
            for k in range(count):
                (off,) = struct.unpack_from(fmt, out, p + 4 + k * step)
                if off > box.offset:
                    struct.pack_into(fmt, out, p + 4 + k * step, off + delta)
    return out


def huge_dims_header(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | None = None,
    *,
    width: int = 100_000,
    height: int = 100_000,
    patch_sps: bool = True,
) -> Path:
    """Copy of an MP4 whose headers declare a huge frame; the samples are unchanged.

    ``tkhd`` (16.16 fixed point) and the visual sample entry (16 bit) cannot hold more than 65535, so
    they get ``min(value, 65535)``; with ``patch_sps`` the avcC SPS is re-encoded to declare exactly
    ``width`` x ``height`` (box sizes and chunk offsets fixed up). What readers see (FFmpeg 5.1, OpenCV
    4.14): 100000 x 100000 is refused ("mb_width/height overflow"), so ffprobe reports 0 x 0 and
    VideoCapture opens with size 0 x 0 and reads no frame; up to ~16000 x 16000 the SPS is accepted and
    reported as declared (a pixel bomb); without ``patch_sps`` the SPS (or an MPEG-4 Part 2 VOL header)
    wins and the real size is reported.
    """
    src = Path(src)
    data = bytearray(src.read_bytes())
    cw, ch = min(width, 65535), min(height, 65535)
    for box in find_boxes(data, "tkhd"):
        version, p = _full_box_fields(data, box)
        off = p + (72 if version == 0 else 84)
        if struct.unpack_from(">II", data, off) != (0, 0):  # video tracks only
            struct.pack_into(">II", data, off, cw << 16, ch << 16)
    for box in iter_boxes(data):
        if box.type.encode("latin-1") in _VISUAL_ENTRIES:
            struct.pack_into(">HH", data, box.offset + box.header + 24, cw, ch)
    avcc = find_boxes(data, "avcC")
    if patch_sps and avcc:
        box = avcc[0]
        data = _resize_box(data, box, _patched_avcc(data[box.offset : box.offset + box.size], width, height))
    out = _dst(src, dst, "hugedims")
    out.write_bytes(bytes(data))
    return out


def _patched_avcc(box: bytes | bytearray, width: int, height: int) -> bytes:
    body = bytes(box[8:])
    pos, n_sps = 6, body[5] & 0x1F
    parts = [body[:6]]
    for _ in range(n_sps):
        (length,) = struct.unpack_from(">H", body, pos)
        sps = rewrite_sps_size(body[pos + 2 : pos + 2 + length], width, height)
        parts.append(struct.pack(">H", len(sps)) + sps)
        pos += 2 + length
    parts.append(body[pos:])
    new_body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(new_body), b"avcC") + new_body


def duration_header_lie(
    src: str | os.PathLike[str], dst: str | os.PathLike[str] | None = None, *, hours: float = 10.0
) -> Path:
    """Copy of an MP4 whose mvhd, tkhd, mdhd and elst durations all claim ``hours``; samples unchanged.

    The sample table (stts) still describes the real length, so a demuxer that trusts it sees the truth.
    """
    src = Path(src)
    data = bytearray(src.read_bytes())
    ((movie_ts, _, _),) = (_read_time_header(data, b) for b in find_boxes(data, "mvhd"))
    seconds = hours * 3600
    for box in iter_boxes(data):
        if box.type in ("mvhd", "mdhd"):
            ts, _, ts_off = _read_time_header(data, box)
            _write_duration(data, box, ts_off, round(seconds * ts))
        elif box.type == "tkhd":
            version, p = _full_box_fields(data, box)
            fmt, off = (">I", p + 16) if version == 0 else (">Q", p + 24)
            limit = 2 ** (8 * struct.calcsize(fmt)) - 1
            struct.pack_into(fmt, data, off, min(round(seconds * movie_ts), limit))
        elif box.type == "elst":
            version, p = _full_box_fields(data, box)
            fmt = ">I" if version == 0 else ">Q"
            step = 12 if version == 0 else 20
            for k in range(struct.unpack_from(">I", data, p)[0]):
                struct.pack_into(fmt, data, p + 4 + k * step, round(seconds * movie_ts))
    out = _dst(src, dst, f"lie{hours:g}h")
    out.write_bytes(bytes(data))
    return out


def _fps_ratio(value: float) -> tuple[int, int]:
    """(numerator, denominator) with num/den == value; 0 -> 0/1, inf -> 1/0, nan -> 0/0."""
    if math.isnan(value):
        return 0, 0
    if math.isinf(value):
        return 1, 0
    frac = Fraction(value).limit_denominator(100_000)
    return min(frac.numerator, 2**32 - 1), frac.denominator


def fps_header(src: str | os.PathLike[str], value: float, dst: str | os.PathLike[str] | None = None) -> Path:
    """Copy of an MP4 or AVI whose header frame rate is ``value`` (0, nan, inf, 1e6, ...); samples unchanged.

    MP4: fps is mdhd timescale / stts delta, so 0 -> timescale 0, inf -> every delta 0, nan -> both 0,
    finite -> timescale/delta = that fraction (durations and ctts rescaled to match, the
    edit list dropped by renaming ``edts`` to ``free``).
    AVI: strh dwRate/dwScale get the same fraction and avih dwMicroSecPerFrame ``1e6 / value`` (0 when
    not finite or 0). Demuxers repair some of these: FFmpeg turns mdhd timescale 0 into 1, and AVI
    rate/scale 0 into 1e6/dwMicroSecPerFrame or else 25 fps.
    """
    src = Path(src)
    data = bytearray(src.read_bytes())
    num, den = _fps_ratio(value)
    if data[:4] == b"RIFF":
        for c in iter_riff_chunks(data):
            if c.fourcc == "avih":
                usec = round(1e6 / value) if math.isfinite(value) and value > 0 else 0
                struct.pack_into("<I", data, c.data_offset, min(usec, 2**32 - 1))
            elif c.fourcc == "strh" and data[c.data_offset : c.data_offset + 4] == b"vids":
                struct.pack_into("<II", data, c.data_offset + 20, den, num)
    else:
        _patch_mp4_rate(data, num, den)
    out = _dst(src, dst, f"fps{value:g}")
    out.write_bytes(bytes(data))
    return out


def _patch_mp4_rate(data: bytearray, timescale: int, delta: int) -> None:
    boxes = list(iter_boxes(data))
    trak = next(
        b
        for b in boxes
        if b.type == "trak"
        and any(
            v.path.startswith(b.path) and v.offset > b.offset and v.type.encode("latin-1") in _VISUAL_ENTRIES
            for v in boxes
        )
    )
    inside = [b for b in boxes if trak.offset < b.offset < trak.offset + trak.size]
    mvhd = next(b for b in boxes if b.type == "mvhd")
    movie_ts, _, movie_ts_off = _read_time_header(data, mvhd)
    stts = next(b for b in inside if b.type == "stts")
    _, p = _full_box_fields(data, stts)
    n_entries = struct.unpack_from(">I", data, p)[0]
    old_delta = struct.unpack_from(">I", data, p + 8)[0] if n_entries else 1
    samples = 0
    for k in range(n_entries):
        samples += struct.unpack_from(">I", data, p + 4 + 8 * k)[0]
        struct.pack_into(">I", data, p + 8 + 8 * k, delta)
    scale = Fraction(delta, old_delta or 1)
    for box in inside:
        if box.type == "mdhd":
            _, _, ts_off = _read_time_header(data, box)
            struct.pack_into(">I", data, ts_off, timescale)
            _write_duration(data, box, ts_off, samples * delta)
        elif box.type == "ctts":
            version, q = _full_box_fields(data, box)
            fmt = ">I" if version == 0 else ">i"
            for k in range(struct.unpack_from(">I", data, q)[0]):
                old = struct.unpack_from(fmt, data, q + 8 + 8 * k)[0]
                struct.pack_into(fmt, data, q + 8 + 8 * k, round(old * scale))
        elif box.type == "edts":
            data[box.offset + 4 : box.offset + 8] = b"free"  # an edit list in the old timescale would lie
        elif box.type == "tkhd" and timescale:
            version, q = _full_box_fields(data, box)
            fmt, off = (">I", q + 16) if version == 0 else (">Q", q + 24)
            struct.pack_into(fmt, data, off, round(samples * delta * movie_ts / timescale))
    if timescale:
        _write_duration(data, mvhd, movie_ts_off, round(samples * delta * movie_ts / timescale))
