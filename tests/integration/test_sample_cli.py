"""``framescribe sample``: JPEGs named with their true times plus frames.csv, in process and as a command."""

from __future__ import annotations

import csv
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import pytest

from tests.conftest import ffmpeg_video
from tests.integration.test_reader_contract import keyframe_times
from worker.adapters.frames.sampler import CSV_NAME, run_sample, tolerance_fraction
from worker.adapters.video.opencv import OpenCVReader
from worker.core.sampling import sample_times
from worker.errors import PlanError, VideoOpenError


def rows(folder: Path) -> list[dict[str, str]]:
    with (folder / CSV_NAME).open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def reference_times(path: Path, start_ms: int, end_ms: int, fps: Fraction) -> list[int]:
    with OpenCVReader(path) as r:
        return [t for t, _ in r.frames(list(sample_times(start_ms, end_ms, fps)))]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``framescribe sample ARGS`` in a fresh process (``python -m worker.cli_sample`` loads no other command)."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli_sample", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def gop15(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s, 320x240, 30 fps H.264, keyframe every 15 frames (0.5 s)."""
    return ffmpeg_video(tmp_path_factory.mktemp("gop") / "gop15.mp4", seconds=6, rate=30, gop=15)


@pytest.mark.parametrize("backend", ["auto", "opencv", "pyav"])
def test_writes_every_frame_with_its_true_time(clip_12s: Path, tmp_path: Path, backend: str) -> None:
    result = run_sample(clip_12s, tmp_path / "out", 1.0, backend=backend)
    listed = rows(tmp_path / "out")
    assert result.frames == len(listed) == 12
    assert [int(r["pts_ms"]) for r in listed] == reference_times(clip_12s, 0, 12_000, Fraction(1))
    assert [int(r["n"]) for r in listed] == list(range(12))
    for r in listed:
        path = tmp_path / "out" / r["file"]
        assert f"{int(r['pts_ms']):010d}ms" in r["file"], "the true time is in the file name"
        image = cv2.imread(str(path))
        assert image is not None and image.shape == (240, 320, 3), "source size, as ffmpeg writes it"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([CSV_NAME, *(r["file"] for r in listed)])


def test_range_and_rate(clip_12s: Path, tmp_path: Path) -> None:
    run_sample(clip_12s, tmp_path, 2.5, start_s=2.5, end_s=7.0)
    got = [int(r["pts_ms"]) for r in rows(tmp_path)]
    assert got == reference_times(clip_12s, 2500, 7000, Fraction(5, 2))
    assert got[0] >= 2500 and got[-1] < 7040 and len(got) == 12


def test_keyframes_stand_in_within_the_tolerance(gop15: Path, tmp_path: Path) -> None:
    fps = 4 / 3  # every 750 ms; keyframes every 500 ms
    result = run_sample(gop15, tmp_path, fps, keyframe_tolerance=tolerance_fraction(fps, True, None))
    got = [int(r["pts_ms"]) for r in rows(tmp_path)]
    targets = list(sample_times(0, 6000, Fraction(4, 3)))
    assert result.plan is not None and result.plan.strategy == "keyframes"
    assert len(got) == len(targets) and set(got) <= set(keyframe_times(gop15))
    assert all(abs(g - t) <= 375 for g, t in zip(got, targets, strict=True))


def test_pixel_budget_resizes_like_the_pipeline(clip_12s: Path, tmp_path: Path) -> None:
    run_sample(clip_12s, tmp_path, 0.5, max_pixels=20_000)
    image = cv2.imread(str(tmp_path / rows(tmp_path)[0]["file"]))
    h, w = image.shape[:2]
    assert h % 32 == 0 and w % 32 == 0 and h * w <= 20_000


def test_tolerance_arguments() -> None:
    assert tolerance_fraction(2.0, False, None) == 0.0
    assert tolerance_fraction(2.0, True, None) == 0.5
    assert tolerance_fraction(2.0, False, 0.1) == pytest.approx(0.2)
    with pytest.raises(PlanError, match="more than half the sampling interval"):
        tolerance_fraction(2.0, True, 0.3)


def test_bad_input_is_refused(tmp_path: Path, clip_12s: Path) -> None:
    with pytest.raises(VideoOpenError, match="no such file"):
        run_sample(tmp_path / "missing.mp4", tmp_path / "out", 1.0)
    with pytest.raises(PlanError, match="past the end"):
        run_sample(clip_12s, tmp_path / "out", 1.0, start_s=60)


def test_command_end_to_end(clip_12s: Path, tmp_path: Path) -> None:
    res = cli(str(clip_12s), "--fps", "2", "--out", str(tmp_path / "o"), "--end", "3")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("wrote 6 frames to ")
    assert [int(r["pts_ms"]) for r in rows(tmp_path / "o")] == [0, 520, 1000, 1520, 2000, 2520]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fps", "0"], "--fps must be above 0"),
        (["--fps", "1", "--tolerance", "0.9"], "more than half the sampling interval"),
        (["--fps", "1", "--start", "99"], "past the end"),
        (["--fps", "1", "--backend", "gstreamer"], "unknown reader backend"),
    ],
)
def test_command_errors_are_one_line(clip_12s: Path, tmp_path: Path, args: list[str], message: str) -> None:
    res = cli(str(clip_12s), "--out", str(tmp_path / "o"), *args)
    assert res.returncode in (1, 2)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("framescribe: error:") and message in lines[0], res.stderr


def test_missing_video_is_exit_code_2(tmp_path: Path) -> None:
    res = cli(str(tmp_path / "nope.mp4"), "--fps", "1", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "no such file" in res.stderr


def test_registered_on_the_framescribe_command() -> None:
    from worker import cli

    assert "worker.cli_sample" in cli.COMMAND_MODULES
    script = Path(sys.executable).with_name("framescribe")
    if not script.exists():
        pytest.skip("the framescribe script is not installed in this environment")
    res = subprocess.run([str(script), "sample", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--keyframes" in res.stdout
