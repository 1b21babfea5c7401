"""One reader contract, run over every backend (OpenCV, PyAV, auto): probe facts, true PTS, seeking back and
forth, calls that continue each other, the keyframe tolerance, bad and truncated files — and the same times
from every backend and every read strategy."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests import media
from tests.conftest import ffmpeg_video
from worker.adapters.video import VideoReader, available_backends, open_reader
from worker.adapters.video.pyav import PyAVReader
from worker.core.readplan import Strategy
from worker.core.sampling import sample_times
from worker.errors import ConfigError, DecodeError, VideoOpenError

BACKENDS = [*available_backends(), "auto"]


def keyframe_times(path: Path) -> list[int]:
    """Keyframe PTS (ms) as ffprobe reports them, independent of the readers."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    times = [round(float(line.split(",")[0]) * 1000) for line in out.splitlines() if "K" in line.split(",")[1]]
    return sorted(times)


@pytest.fixture(scope="module")
def gop15(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s, 320x240, 30 fps H.264 (B-frames), keyframe every 15 frames (0.5 s)."""
    return ffmpeg_video(tmp_path_factory.mktemp("gop") / "gop15.mp4", seconds=8, rate=30, gop=15)


@pytest.fixture(scope="module")
def mp4v_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s, 160x120, 25 fps MPEG-4 part 2 written by cv2.VideoWriter (no H.264 reference flags)."""
    return media.make_video(tmp_path_factory.mktemp("mp4v") / "clip.mp4", seconds=4, size=(160, 120), fps=25).path


@pytest.fixture(scope="module")
def ntsc_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s, 160x120 H.264 at 30000/1001 fps (frame times fall on half milliseconds: rounding ties)."""
    path = tmp_path_factory.mktemp("ntsc") / "ntsc.mp4"
    return media.make_lavfi_video(path, seconds=4, size=(160, 120), fps=30000 / 1001, gop=12).path


def read(reader: VideoReader, targets: list[int]) -> list[tuple[int, np.ndarray]]:
    return list(reader.frames(targets))


@pytest.mark.parametrize("backend", BACKENDS)
class TestReaderContract:
    def test_probe(self, backend: str, clip_12s: Path) -> None:
        with open_reader(clip_12s, backend=backend) as r:
            info = r.probe()
        assert info.fps == pytest.approx(25.0)
        assert info.duration_ms == pytest.approx(12_000, abs=40)
        assert (info.width, info.height) == (320, 240)
        assert info.frame_count == 300
        assert info.codec in ("avc1", "h264", "H264")

    def test_frames_carry_true_pts(self, backend: str, clip_12s: Path) -> None:
        targets = list(sample_times(0, 12_000, Fraction(1)))
        with open_reader(clip_12s, backend=backend) as r:
            got = read(r, targets)
        assert [t for t, _ in got] == targets  # 25 fps: every whole second is a frame's PTS
        image = got[0][1]
        assert image.shape == (240, 320, 3) and image.dtype == np.uint8

    def test_targets_between_frames_take_the_next_frame(self, backend: str, clip_12s: Path) -> None:
        with open_reader(clip_12s, backend=backend) as r:
            got = [t for t, _ in r.frames([1010, 1030, 5555])]
        assert got == [1040, 5560]  # the frame at 1040 serves both 1010 and 1030

    def test_seek_forward_and_back_give_same_frames(self, backend: str, clip_12s: Path) -> None:
        with open_reader(clip_12s, backend=backend) as r:
            late = read(r, [9000, 9040, 9080])
            early = read(r, [1000, 1040])
            again = read(r, [9000])
        assert [t for t, _ in late] == [9000, 9040, 9080]
        assert [t for t, _ in early] == [1000, 1040]
        assert again[0][0] == 9000 and np.array_equal(again[0][1], late[0][1])

    def test_consecutive_calls_equal_one_call(self, backend: str, gop15: Path) -> None:
        targets = list(sample_times(0, 8_000, Fraction(3)))
        with open_reader(gop15, backend=backend) as r:
            whole = [t for t, _ in r.frames(targets)]
        with open_reader(gop15, backend=backend) as r:
            parts = [t for k in range(0, len(targets), 5) for t, _ in r.frames(targets[k : k + 5])]
        assert parts == whole and len(whole) == len(targets)

    def test_every_frame_of_the_video(self, backend: str, gop15: Path) -> None:
        targets = list(sample_times(0, 8_000, Fraction(30)))
        with open_reader(gop15, backend=backend) as r:
            got = [t for t, _ in r.frames(targets)]
        assert got == [round(i * 1000 / 30) for i in range(240)]

    def test_keyframe_tolerance_keeps_true_times_within_it(self, backend: str, gop15: Path) -> None:
        targets = list(sample_times(0, 8_000, Fraction(4, 3)))  # every 750 ms; keyframes every 500 ms
        tol = 375
        with open_reader(gop15, backend=backend, keyframe_tolerance=0.5) as r:
            got = [t for t, _ in r.frames(targets)]
        assert len(got) == len(targets) and got == sorted(set(got))
        assert all(abs(g - t) <= tol for g, t in zip(got, targets, strict=True))
        if backend != "opencv":  # OpenCV cannot tell keyframes; its exact frames are within tolerance too
            assert set(got) <= set(keyframe_times(gop15))

    @pytest.mark.parametrize(
        ("make", "message"),
        [
            (lambda p: p, "no such file"),
            (lambda p: (p.mkdir(), p)[1], "is a directory"),
            (lambda p: (p.write_bytes(b""), p)[1], "empty"),
            (lambda p: (p.write_text("hello, not a video\n" * 50), p)[1], "not a video"),
        ],
    )
    def test_bad_files(self, backend: str, tmp_path: Path, make: object, message: str) -> None:
        path = make(tmp_path / "bad.mp4")  # type: ignore[operator]
        with pytest.raises(VideoOpenError, match=message):
            open_reader(path, backend=backend).probe()

    def test_audio_only_is_refused(self, backend: str, tmp_path: Path) -> None:
        path = media.audio_only(tmp_path / "audio.m4a")
        with pytest.raises(VideoOpenError, match=r"video stream|not a video"):
            open_reader(path, backend=backend).probe()

    def test_truncated_video_yields_what_decodes(self, backend: str, tmp_path: Path) -> None:
        src = ffmpeg_video(tmp_path / "src.mp4", seconds=10, gop=25)
        fast = tmp_path / "fast.mp4"  # moov first, so the index survives the truncation
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), "-c", "copy", "-movflags", "+faststart", str(fast)],
            check=True,
        )
        cut = tmp_path / "cut.mp4"
        data = fast.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        with open_reader(cut, backend=backend) as r:
            info = r.probe()
            assert info.duration_ms < 10_000, "the real length is measured, not the header's claim"
            frames = list(r.frames(list(range(0, info.duration_ms, 500))))
        assert frames and frames[-1][0] < 10_000

    def test_decode_error_when_stream_stops_early(self, backend: str, clip_12s: Path) -> None:
        with open_reader(clip_12s, backend=backend) as r:
            r.probe()
            inner: object = r
            for name in ("_pyav",):  # the auto reader probes with PyAV
                inner = getattr(inner, name, None) or inner
            inner._info = dataclasses.replace(inner._info, duration_ms=60_000)  # type: ignore[attr-defined]
            with pytest.raises(DecodeError) as exc:
                list(r.frames([11_000, 20_000, 30_000]))
        assert exc.value.at_ms is not None and 11_000 <= exc.value.at_ms <= 12_100


@pytest.mark.parametrize("fps", [Fraction(1, 5), Fraction(1), Fraction(5, 2), Fraction(7), Fraction(30000, 1001)])
def test_every_backend_gives_the_same_times(
    clip_12s: Path, gop15: Path, mp4v_clip: Path, ntsc_clip: Path, fps: Fraction
) -> None:
    for path in (clip_12s, gop15, mp4v_clip, ntsc_clip):
        with open_reader(path, backend="opencv") as r:
            duration = r.probe().duration_ms
            reference = [t for t, _ in r.frames(list(sample_times(0, duration, fps)))]
        for backend in BACKENDS:
            with open_reader(path, backend=backend) as r:
                got = [t for t, _ in r.frames(list(sample_times(0, duration, fps)))]
            assert got == reference, (path.name, backend)


@pytest.mark.parametrize("strategy", [Strategy.SEQUENTIAL, Strategy.SKIP, Strategy.SEEK])
def test_pyav_strategies_give_the_same_frames(clip_12s: Path, strategy: Strategy) -> None:
    targets = [0, 333, 2100, 2140, 5555, 7000, 11_960]
    with open_reader(clip_12s, backend="opencv") as r:
        reference = read(r, targets)
    with PyAVReader(clip_12s) as r:
        got = list(r.frames(targets, strategy=strategy))
    assert [t for t, _ in got] == [t for t, _ in reference]
    for (_, a), (_, b) in zip(got, reference, strict=True):  # same pixels, up to colour-conversion rounding
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 4


def test_keyframes_strategy_decodes_exact_frames_where_no_keyframe_is_close(clip_12s: Path) -> None:
    keys = set(keyframe_times(clip_12s))  # every 2 s
    targets = [0, 1000, 2000, 3000, 4100]
    with PyAVReader(clip_12s) as r:
        got = [t for t, _ in r.frames(targets, strategy=Strategy.KEYFRAMES, tolerance=300)]
    assert got == [0, 1000, 2000, 3000, 4000]
    assert {0, 2000, 4000} <= keys and 1000 not in keys  # 1000 and 3000 were decoded exactly


@pytest.fixture(scope="module")
def gop30(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s, 320x240, 30 fps H.264, a keyframe every 30 frames: on every 1 fps target."""
    return ffmpeg_video(tmp_path_factory.mktemp("gop30") / "gop30.mp4", seconds=6, rate=30, gop=30)


@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_keyframes_on_the_targets_are_used_with_no_tolerance(gop30: Path, backend: str) -> None:
    """No flag, no tolerance: keyframes that are the targets' exact frames are decoded alone, and give the
    same times and pixels as exact decoding."""
    targets = list(sample_times(0, 6_000, Fraction(1)))
    with open_reader(gop30, backend="opencv") as r:
        reference = read(r, targets)
    with open_reader(gop30, backend=backend) as r:
        got = read(r, targets)
        plan = r.last_plan  # type: ignore[attr-defined]
    assert (plan.backend, plan.strategy, plan.tolerance_ms) == ("pyav", Strategy.KEYFRAMES, 0)
    assert [t for t, _ in got] == [t for t, _ in reference] == keyframe_times(gop30)
    for (_, a), (_, b) in zip(got, reference, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 4


def test_exact_keyframe_mode_decodes_other_targets_exactly(gop30: Path) -> None:
    """Targets between keyframes still get their exact frame when the keyframe path is forced with no
    tolerance (a keyframe before a target never stands in for it)."""
    targets = [0, 500, 1000, 1520, 2000, 4990]
    with open_reader(gop30, backend="opencv") as r:
        reference = [t for t, _ in read(r, targets)]
    with PyAVReader(gop30) as r:
        got = [t for t, _ in r.frames(targets, strategy=Strategy.KEYFRAMES, tolerance=0)]
    assert got == reference


def test_auto_reader_plans_by_keyframe_spacing(gop15: Path, clip_12s: Path, mp4v_clip: Path) -> None:
    with open_reader(gop15, keyframe_tolerance=0.5) as r:
        list(r.frames(list(sample_times(0, 8_000, Fraction(1)))))
        plan = r.last_plan  # type: ignore[attr-defined]
    assert plan.strategy is Strategy.KEYFRAMES and plan.backend == "pyav"
    with open_reader(clip_12s) as r:  # dense on H.264: every interval is decoded, droppable frames skipped
        list(r.frames(list(sample_times(0, 12_000, Fraction(10)))))
        dense = r.last_plan  # type: ignore[attr-defined]
    assert dense.strategy in (Strategy.SEQUENTIAL, Strategy.SKIP) and dense.backend == "pyav"
    with open_reader(clip_12s) as r:  # sparse: only the intervals holding a target
        list(r.frames(list(sample_times(0, 12_000, Fraction(1, 5)))))
        sparse = r.last_plan  # type: ignore[attr-defined]
    assert sparse.strategy in (Strategy.SKIP, Strategy.SEEK)
    with open_reader(mp4v_clip) as r:  # no reference flags to skip by: OpenCV's plain decode is cheapest
        list(r.frames(list(sample_times(0, 4_000, Fraction(10)))))
        plain = r.last_plan  # type: ignore[attr-defined]
    assert (plain.backend, plain.strategy) == ("opencv", Strategy.SEQUENTIAL)


def test_unknown_backend_is_a_config_error(clip_12s: Path) -> None:
    with pytest.raises(ConfigError, match="unknown reader backend"):
        open_reader(clip_12s, backend="gstreamer")


def _frames_of(reader: VideoReader, targets: list[int]) -> Iterator[int]:
    for t, _ in reader.frames(targets):
        yield t


def test_pyav_memory_is_bounded_by_one_interval(gop15: Path) -> None:
    """Buffered packets never outlive their keyframe interval (streams, not lists)."""
    with PyAVReader(gop15) as r:
        seen = 0
        for _ in _frames_of(r, list(sample_times(0, 8_000, Fraction(1, 2)))):
            assert len(r._gop) <= 15 and len(r._ready) <= 16
            seen += 1
    assert seen == 4
