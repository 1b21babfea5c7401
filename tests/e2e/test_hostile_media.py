"""Hostile and broken media through the CLI: each ends as a one-line error or a finished job — never a
traceback, a hang, or a job left half-written (queued/running)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import media

pytestmark = pytest.mark.skipif(not media.have_ffmpeg(), reason="ffmpeg is needed to make the media")

Maker = Callable[[Path, Path], Path]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s, 320x240, 10 fps H.264 with a cut at 3 s, moov at the front (faststart)."""
    d = tmp_path_factory.mktemp("hostile-base")
    return media.make_video(d / "base.mp4", seconds=6, fps=10, cuts_at=[3.0], codec="libx264", faststart=True).path


CASES: dict[str, Maker] = {
    "empty": lambda d, b: media.empty_file(d / "empty.mp4"),
    "text_as_mp4": lambda d, b: media.text_as_mp4(d / "text.mp4"),
    "image_as_mp4": lambda d, b: media.image_as_mp4(d / "image.mp4"),
    "truncated_10": lambda d, b: media.truncated(b, 0.10, d / "t10.mp4"),
    "truncated_50": lambda d, b: media.truncated(b, 0.50, d / "t50.mp4"),
    "truncated_90": lambda d, b: media.truncated(b, 0.90, d / "t90.mp4"),
    "bit_flips": lambda d, b: media.bit_flipped(b, 200, seed=7, dst=d / "flip.mp4"),
    "huge_dims": lambda d, b: media.huge_dims_header(b, d / "huge.mp4"),
    "ten_hour_header": lambda d, b: media.duration_header_lie(b, d / "long.mp4", hours=10),
    "fps_zero": lambda d, b: media.fps_header(b, 0.0, d / "fps0.mp4"),
    "fps_nan": lambda d, b: media.fps_header(b, float("nan"), d / "fpsnan.mp4"),
    "fps_million": lambda d, b: media.fps_header(b, 1e6, d / "fps1e6.mp4"),
    "vfr": lambda d, b: media.vfr_video(d / "vfr.mp4"),
    "audio_only": lambda d, b: media.audio_only(d / "audio.mp4"),
    "single_frame": lambda d, b: media.single_frame_video(d / "one.mp4"),
    "one_by_one": lambda d, b: media.tiny_video(d / "tiny.mp4", seconds=2),
    "panorama_16_1": lambda d, b: media.panorama_video(d / "pano.mp4"),
    "zero_length_stream": lambda d, b: media.zero_length_stream(d / "zero.avi"),
    "fifo": lambda d, b: media.fifo(d / "pipe.mp4"),
    "dev_zero": lambda d, b: Path("/dev/zero"),
    "long_name": lambda d, b: d / ("n" * 4096 + ".mp4"),
    "unicode_name": lambda d, b: _copy(b, d / "vidéo ünïcødé 映像.mp4"),
}


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def _run(path: Path, data: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FRAMESCRIBE_DATA_DIR": str(data), "FRAMESCRIBE_DESCRIBER__KIND": "local"}
    env.pop("DASHSCOPE_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "run", str(path), "--fps", "2", "--segment-seconds", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_media_is_handled(case: str, base: Path, tmp_path: Path) -> None:
    media_dir = tmp_path / "in"
    media_dir.mkdir()
    path = CASES[case](media_dir, base)
    res = _run(path, tmp_path / "data")
    both = res.stdout + res.stderr
    assert "Traceback" not in both, both[-2000:]
    assert "internal error" not in both, both[-2000:]
    if res.returncode != 0:
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("framescribe: error:")]
        summary = [ln for ln in res.stdout.splitlines() if ln.startswith("Summary (failed)")]
        assert len(errors) == 1 or summary, both[-2000:]
    else:
        assert any(ln.startswith("Summary (") for ln in res.stdout.splitlines()), res.stdout
    db = tmp_path / "data" / "framescribe.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            states = [r[0] for r in conn.execute("SELECT state FROM jobs")]
            seg_states = [r[0] for r in conn.execute("SELECT state FROM segments")]
        assert all(s in ("done", "partial", "failed") for s in states), states
        assert all(s in ("done", "static", "failed", "cancelled") for s in seg_states), seg_states
    _record(case, res)


def _record(case: str, res: subprocess.CompletedProcess[str]) -> None:
    """Appends the outcome to the reliability report (scripts/reliability-report reads it)."""
    out = os.environ.get("FRAMESCRIBE_RELIABILITY_LOG")
    if not out:
        return
    line = next((ln for ln in res.stderr.splitlines() if ln.startswith("framescribe: error:")), "")
    state = next((ln.split(":")[0] for ln in res.stdout.splitlines() if ln.startswith("Summary (")), "")
    with open(out, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"kind": "bad_input", "case": case, "exit": res.returncode, "error": line,
                             "summary": state, "clean": True}) + "\n")  # fmt: skip
