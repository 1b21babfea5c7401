"""The synthetic media factory tells the truth: read every claim back with OpenCV and ffprobe."""

from __future__ import annotations

import itertools
import math
import stat
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests import media

needs_ffmpeg = pytest.mark.skipif(not media.have_ffmpeg(), reason="ffmpeg/ffprobe not installed")

CODECS = [("libx264", "mp4"), ("mp4v", "mp4"), ("MJPG", "avi")]


def decode(path: Path) -> list[media.Frame]:
    cap = cv2.VideoCapture(str(path))
    frames: list[media.Frame] = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return frames
            frames.append(np.asarray(frame, np.uint8))
    finally:
        cap.release()


def cv_props(path: Path) -> dict[str, float]:
    cap = cv2.VideoCapture(str(path))
    try:
        return {
            "opened": float(cap.isOpened()),
            "count": cap.get(cv2.CAP_PROP_FRAME_COUNT),
            "fps": cap.get(cv2.CAP_PROP_FPS),
            "width": cap.get(cv2.CAP_PROP_FRAME_WIDTH),
            "height": cap.get(cv2.CAP_PROP_FRAME_HEIGHT),
        }
    finally:
        cap.release()


def video_stream(path: Path, *extra: str) -> dict[str, Any]:
    streams: list[dict[str, Any]] = media.ffprobe(path, *extra).get("streams", [])
    video = [s for s in streams if s.get("codec_type") == "video"]
    assert len(video) == 1, streams
    return video[0]


def mean_diffs(frames: list[media.Frame]) -> list[float]:
    """diffs[i] = mean |frame i - frame i-1|; diffs[0] = 0."""
    return [0.0] + [float(cv2.absdiff(a, b).mean()) for a, b in itertools.pairwise(frames)]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def h264(work: Path) -> media.VideoTruth:
    """2 s, 30 fps, 320x240 libx264 (gop 30, moov last), bouncing disc, no cuts."""
    return media.make_video(work / "src.mp4", seconds=2, fps=30, codec="libx264", gop=30)


# ---------------------------------------------------------------------------------- truthful videos


@pytest.mark.parametrize(("codec", "ext"), CODECS)
def test_frame_count_fps_and_size_read_back(work: Path, codec: media.Codec, ext: str) -> None:
    truth = media.make_video(work / f"count_{codec}.{ext}", seconds=1.5, fps=20, size=(176, 144), codec=codec)
    assert truth.frame_count == 30
    props = cv_props(truth.path)
    assert (props["count"], props["fps"], props["width"], props["height"]) == (30, 20, 176, 144)
    assert len(decode(truth.path)) == 30
    if media.have_ffmpeg():
        s = video_stream(truth.path, "-count_frames")
        assert (int(s["nb_read_frames"]), s["width"], s["height"]) == (30, 176, 144)
        assert Fraction(s["r_frame_rate"]) == 20


@needs_ffmpeg
def test_ntsc_rate_and_gop(work: Path) -> None:
    truth = media.make_video(work / "ntsc.mp4", seconds=1, fps=30000 / 1001, codec="libx264", gop=7)
    s = video_stream(truth.path, "-show_frames")
    assert Fraction(s["r_frame_rate"]) == Fraction(30000, 1001)
    frames: list[dict[str, Any]] = media.ffprobe(truth.path, "-show_frames")["frames"]
    keys = [i for i, f in enumerate(frames) if f["key_frame"] == 1]
    assert len(frames) == truth.frame_count == 30
    assert keys == list(range(0, 30, 7))


@pytest.mark.parametrize(("codec", "ext"), CODECS)
def test_cuts_are_exactly_where_claimed(work: Path, codec: media.Codec, ext: str) -> None:
    truth = media.make_video(
        work / f"cuts_{codec}.{ext}", seconds=3, fps=20, cuts_at=(0.5, 1.5, 2.05), codec=codec, gop=10
    )
    assert truth.cut_frames == (10, 30, 41)
    diffs = mean_diffs(decode(truth.path))
    at_cuts = [diffs[i] for i in truth.cut_frames]
    elsewhere = [d for i, d in enumerate(diffs) if i not in truth.cut_frames]
    assert min(at_cuts) > 40 > 10 > max(elsewhere), (at_cuts, max(elsewhere))


@pytest.mark.parametrize(("codec", "ext"), CODECS)
def test_motion_only_inside_events(work: Path, codec: media.Codec, ext: str) -> None:
    truth = media.make_video(
        work / f"events_{codec}.{ext}",
        seconds=3,
        fps=20,
        cuts_at=(1.5,),
        motion_events=((0.5, 1.0), (2.0, 2.4)),
        codec=codec,
        gop=10,
    )
    assert truth.event_frames == (range(10, 20), range(40, 48))
    frames = decode(truth.path)
    diffs = mean_diffs(frames)
    changed = [diffs[i] for i in range(1, len(frames)) if truth.changes_at(i)]
    still = [i for i in range(1, len(frames)) if not truth.changes_at(i)]
    assert len(still) == 60 - 1 - len(changed) > 30
    assert min(changed) > 1.0 > 0.1 > max(diffs[i] for i in still)
    if codec == "MJPG":  # intra-only: identical input frames decode to identical pixels
        assert all(np.array_equal(frames[i], frames[i - 1]) for i in still)


def test_static_and_noise_flags(work: Path) -> None:
    still = media.make_video(work / "still.avi", seconds=1, fps=10, codec="MJPG", static=True)
    frames = decode(still.path)
    assert all(np.array_equal(frames[0], f) for f in frames)
    noisy = media.make_video(work / "noisy.avi", seconds=1, fps=10, codec="MJPG", static=True, noise=6)
    assert all(0.5 < d < 3 for d in mean_diffs(decode(noisy.path))[1:])
    if media.have_ffmpeg():
        noisy = media.make_video(work / "noisy.mp4", seconds=1, fps=10, codec="libx264", static=True, noise=2)
        assert all(0.3 < d < 3 for d in mean_diffs(decode(noisy.path))[1:])


@pytest.mark.parametrize(("codec", "ext"), CODECS)
def test_deterministic_given_seed(work: Path, codec: media.Codec, ext: str) -> None:
    def make(name: str, seed: int) -> bytes:
        kw: dict[str, Any] = {"seconds": 0.5, "fps": 10, "cuts_at": (0.2,), "codec": codec, "seed": seed}
        return media.make_video(work / f"{name}.{ext}", **kw).path.read_bytes()

    assert make(f"det_a_{codec}", 3) == make(f"det_b_{codec}", 3)
    assert make(f"det_c_{codec}", 3) != make(f"det_d_{codec}", 4)


@needs_ffmpeg
def test_lavfi_video(work: Path) -> None:
    truth = media.make_lavfi_video(work / "lavfi.mp4", seconds=1, size=(320, 180), fps=25, gop=5)
    s = video_stream(truth.path, "-count_frames")
    assert (int(s["nb_read_frames"]), s["width"], s["height"], s["codec_name"]) == (25, 320, 180, "h264")


@needs_ffmpeg
def test_vfr_timestamps_follow_two_rates(work: Path) -> None:
    path = media.vfr_video(work / "vfr.mp4", seconds=4, rates=(5.0, 30.0))
    packets: list[dict[str, Any]] = media.ffprobe(path, "-show_packets")["packets"]
    pts = sorted(float(p["pts_time"]) for p in packets)
    assert len(pts) == 10 + 60
    deltas = np.diff(pts)
    assert np.allclose(deltas[:10], 1 / 5, atol=1e-4)
    assert np.allclose(deltas[10:], 1 / 30, atol=1e-4)
    assert len(decode(path)) == 70


# ---------------------------------------------------------------------------------- hostile media


def test_not_videos(work: Path) -> None:
    empty = media.empty_file(work / "empty.mp4")
    text = media.text_as_mp4(work / "notes.mp4")
    image = media.image_as_mp4(work / "photo.mp4")
    assert empty.stat().st_size == 0
    assert b"ftyp" not in text.read_bytes() and text.read_text().startswith("This is not a video.")
    assert image.read_bytes()[:3] == b"\xff\xd8\xff"
    decoded = cv2.imread(str(image))
    assert decoded is not None and decoded.shape == (240, 320, 3)
    assert not cv_props(empty)["opened"] and not cv_props(text)["opened"]


@needs_ffmpeg
def test_truncated(work: Path, h264: media.VideoTruth) -> None:
    size = h264.path.stat().st_size
    cut = media.truncated(h264.path, 0.5)
    assert cut.stat().st_size == size // 2
    assert cut.read_bytes() == h264.path.read_bytes()[: size // 2]
    assert not cv_props(cut)["opened"]  # moov is at the end: nothing left to index the samples
    fast = media.make_video(work / "fast.mp4", seconds=2, fps=30, codec="libx264", faststart=True)
    assert [b.type for b in media.iter_boxes(fast.path.read_bytes()) if "/" not in b.path][:2] == [
        "ftyp",
        "moov",
    ]
    assert 0 < len(decode(media.truncated(fast.path, 0.5))) < 60


def test_bit_flipped(h264: media.VideoTruth) -> None:
    src = h264.path.read_bytes()
    flipped = media.bit_flipped(h264.path, 50, seed=1).read_bytes()
    assert len(flipped) == len(src)
    diff = np.frombuffer(src, np.uint8) ^ np.frombuffer(flipped, np.uint8)
    assert int(np.unpackbits(diff).sum()) == 50
    (mdat,) = media.find_boxes(src, "mdat")
    changed = np.flatnonzero(diff)
    assert changed.min() >= mdat.offset + mdat.header and changed.max() < mdat.offset + mdat.size
    assert media.bit_flipped(h264.path, 50, seed=1, dst=h264.path.with_name("again.mp4")).read_bytes() == flipped


@needs_ffmpeg
@pytest.mark.parametrize(
    ("make", "size", "count"),
    [
        (media.single_frame_video, (320, 240), 1),
        (media.tiny_video, (1, 1), 10),
        (media.panorama_video, (1024, 64), 10),
    ],
)
def test_odd_shapes(work: Path, make: Any, size: tuple[int, int], count: int) -> None:
    path = make(work / f"{make.__name__}.mp4")
    s = video_stream(path, "-count_frames")
    assert ((s["width"], s["height"]), int(s["nb_read_frames"])) == (size, count)
    assert len(decode(path)) == count


@needs_ffmpeg
def test_audio_only(work: Path) -> None:
    path = media.audio_only(work / "sine.mp4")
    streams: list[dict[str, Any]] = media.ffprobe(path)["streams"]
    assert [s["codec_type"] for s in streams] == ["audio"]
    assert not cv_props(path)["opened"]


def test_zero_length_stream(work: Path) -> None:
    path = media.zero_length_stream(work / "zero.avi")
    props = cv_props(path)
    assert props["opened"] and props["count"] == 0 and decode(path) == []
    if media.have_ffmpeg():
        s = video_stream(path, "-count_frames")
        assert (s["duration_ts"], s.get("nb_read_frames", "0")) == (0, "0")


def test_fifo(work: Path) -> None:
    assert stat.S_ISFIFO(media.fifo(work / "pipe.mp4").stat().st_mode)


@needs_ffmpeg
def test_huge_dims_header(h264: media.VideoTruth) -> None:
    path = media.huge_dims_header(h264.path)
    data = path.read_bytes()
    assert media.read_tkhd_size(data) == [(65535.0, 65535.0)]
    (entry,) = media.find_boxes(data, "avc1")
    assert struct.unpack_from(">HH", data, entry.offset + entry.header + 24) == (65535, 65535)
    props = cv_props(path)
    assert props["width"] == 0 and decode(path) == []  # FFmpeg refuses the 100000x100000 SPS
    assert video_stream(path)["width"] == 0


@needs_ffmpeg
def test_sps_rewrite_is_exact(work: Path, h264: media.VideoTruth) -> None:
    same = media.huge_dims_header(h264.path, work / "same.mp4", width=320, height=240)
    assert media.find_boxes(same.read_bytes(), "avcC") == media.find_boxes(h264.path.read_bytes(), "avcC")
    fast = media.make_video(work / "fast_dims.mp4", seconds=1, fps=10, codec="libx264", faststart=True)
    for src in (h264.path, fast.path):  # moov last, and moov first (chunk offsets shift)
        s = video_stream(media.huge_dims_header(src, width=4000, height=3000))
        assert (s["width"], s["height"]) == (4000, 3000)


@needs_ffmpeg
def test_duration_header_lie(h264: media.VideoTruth) -> None:
    path = media.duration_header_lie(h264.path, hours=10)
    info = media.ffprobe(path)
    assert float(info["format"]["duration"]) == 36000
    assert len(decode(path)) == 60 and cv_props(path)["count"] == 60  # stts still tells the truth


@pytest.mark.parametrize(
    ("value", "r_frame_rate", "cv_fps"),
    [
        (1e6, "1000000/1", 1e6),
        (7.5, "15/2", 7.5),
        (0.0, "1/1", 1.0),
        (math.nan, "1/0", 1.0),
        (math.inf, "1/0", 1.0),
    ],
)
def test_fps_header_mp4(h264: media.VideoTruth, value: float, r_frame_rate: str, cv_fps: float) -> None:
    """FFmpeg repairs timescale 0 to 1: 0 and nan surface as 1 fps in OpenCV, inf as 1/0 in ffprobe."""
    path = media.fps_header(h264.path, value)
    assert cv_props(path)["fps"] == cv_fps
    assert len(decode(path)) == 60
    if media.have_ffmpeg():
        assert video_stream(path)["r_frame_rate"] == r_frame_rate


@pytest.mark.parametrize(
    ("value", "rate_scale", "cv_fps"),
    [(1e6, (1000000, 1), 1e6), (7.5, (15, 2), 7.5), (0.0, (0, 1), 25.0), (math.nan, (0, 0), 25.0)],
)
def test_fps_header_avi(work: Path, value: float, rate_scale: tuple[int, int], cv_fps: float) -> None:
    """AVI rate/scale 0 is replaced by FFmpeg's 25 fps default."""
    src = media.make_video(work / "rate.avi", seconds=1, fps=10, codec="MJPG").path
    path = media.fps_header(src, value)
    strh = next(c for c in media.iter_riff_chunks(path.read_bytes()) if c.fourcc == "strh")
    scale, rate = struct.unpack_from("<II", path.read_bytes(), strh.data_offset + 20)
    assert (rate, scale) == rate_scale
    assert cv_props(path)["fps"] == cv_fps
