"""The OpenCV reader on generated videos: probe facts, true PTS, seeking, and bad files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.conftest import ffmpeg_video
from worker.adapters.video.opencv import OpenCVReader
from worker.core.sampling import sample_times
from worker.errors import DecodeError, VideoOpenError


def test_probe(clip_12s: Path) -> None:
    with OpenCVReader(clip_12s) as r:
        info = r.probe()
    assert info.fps == pytest.approx(25.0)
    assert info.duration_ms == pytest.approx(12_000, abs=40)
    assert (info.width, info.height) == (320, 240)
    assert info.frame_count == 300
    assert info.codec in ("avc1", "h264", "H264")


def test_frames_carry_true_pts(clip_12s: Path) -> None:
    targets = list(sample_times(0, 12_000, __import__("fractions").Fraction(1)))
    with OpenCVReader(clip_12s) as r:
        got = list(r.frames(targets))
    assert [t for t, _ in got] == targets  # 25 fps: every whole second is a frame's PTS
    assert got[0][1].shape == (240, 320, 3)


def test_seek_forward_and_back_give_same_frames(clip_12s: Path) -> None:
    with OpenCVReader(clip_12s) as r:
        late = list(r.frames([9000, 9040, 9080]))
        early = list(r.frames([1000, 1040]))
        again = list(r.frames([9000]))
    assert [t for t, _ in late] == [9000, 9040, 9080]
    assert [t for t, _ in early] == [1000, 1040]
    assert again[0][0] == 9000 and (again[0][1] == late[0][1]).all()


def test_targets_between_frames_take_the_next_frame(clip_12s: Path) -> None:
    with OpenCVReader(clip_12s) as r:
        got = [t for t, _ in r.frames([1010, 1030, 5555])]
    assert got == [1040, 5560]  # the frame at 1040 serves both 1010 and 1030


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty"),
        (lambda p: (p.write_text("hello, not a video\n" * 50), p)[1], "not a video"),
    ],
)
def test_bad_files(tmp_path: Path, make: object, message: str) -> None:
    path = make(tmp_path / "bad.mp4")  # type: ignore[operator]
    with pytest.raises(VideoOpenError, match=message):
        OpenCVReader(path).probe()


def test_truncated_video_fails_with_the_time(tmp_path: Path) -> None:
    src = ffmpeg_video(tmp_path / "src.mp4", seconds=10, gop=25)
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    # Keep the moov atom at the end out: re-mux with faststart so the index survives the truncation.
    import subprocess

    fast = tmp_path / "fast.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), "-c", "copy", "-movflags", "+faststart", str(fast)],
        check=True,
    )
    data = fast.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with OpenCVReader(cut) as r:
        info = r.probe()
        assert info.duration_ms < 10_000, "the real length is measured, not the header's claim"
        frames = list(r.frames(list(range(0, info.duration_ms, 500))))
    assert frames, "the decodable half still yields frames"
    assert frames[-1][0] < 10_000


def test_decode_error_when_stream_stops_early(clip_12s: Path) -> None:
    with OpenCVReader(clip_12s) as r:
        r.probe()
        r._info = dataclasses.replace(r._info, duration_ms=60_000)  # type: ignore[type-var]
        with pytest.raises(DecodeError) as exc:
            list(r.frames([11_000, 20_000, 30_000]))
    assert exc.value.at_ms is not None and 11_000 <= exc.value.at_ms <= 12_000
