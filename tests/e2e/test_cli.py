"""The CLI as a subprocess: the main job on a generated clip, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ffmpeg_video


def cli(
    *args: str, data: Path, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "FRAMESCRIBE_DATA_DIR": str(data), **(env or {})}
    full.pop("DASHSCOPE_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, env=full, timeout=timeout
    )


def test_run_prints_segments_summary_and_writes_export(tmp_path: Path, clip_12s: Path) -> None:
    res = cli("run", str(clip_12s), "--fps", "2", "--segment-seconds", "5", data=tmp_path / "d")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    job_id = lines[0].split()[1]
    seg_lines = [ln for ln in lines if ln.startswith("[")]
    assert [ln.split("]")[0] for ln in seg_lines] == ["[00:00–00:05", "[00:05–00:10", "[00:10–00:12"]
    assert "Local OpenCV analysis" in seg_lines[0]
    assert any(ln.startswith("Summary (done):") for ln in lines)
    export = json.loads((tmp_path / "d" / "exports" / f"{job_id}.json").read_text())
    assert export["state"] == "done" and len(export["segments"]) == 3
    first = export["segments"][0]
    assert first["frame_count"] == 10 and len(first["frames"]) == 10
    assert [f["t_ms"] for f in first["frames"]] == [0, 520, 1000, 1520, 2000, 2520, 3000, 3520, 4000, 4520]
    # 25 fps has no frame at x.5 s: the next frame's true PTS is recorded, not the target time
    for f in first["frames"]:
        assert Path(f["path"]).is_file() and f["width"] % 32 == 0
    assert "Traceback" not in res.stderr
    shown = cli("show", job_id, data=tmp_path / "d")
    assert shown.returncode == 0 and "state=done" in shown.stdout
    listed = cli("jobs", "list", data=tmp_path / "d")
    assert job_id in listed.stdout
    exported = cli("export", job_id, "--format", "json", data=tmp_path / "d")
    assert json.loads(exported.stdout)["id"] == job_id


def test_dry_run_estimates_without_a_job(tmp_path: Path, clip_12s: Path) -> None:
    res = cli("run", str(clip_12s), "--dry-run", "--describer", "dashscope", data=tmp_path / "d")
    assert res.returncode == 0, res.stderr
    est = json.loads(res.stdout)["estimate"]
    # 12 s at 1 fps in 10 s segments: the 2-frame tail is merged, one call of 12 frames.
    assert est["segments"] == 1 and est["frames"] == 12 and est["calls"] == 1 and est["video_tokens"] > 0


def _truncated(tmp: Path) -> Path:
    src = ffmpeg_video(tmp / "src.mp4", seconds=6)
    out = tmp / "trunc.mp4"
    out.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    return out


BAD = {
    "missing": (lambda t: t / "nope.mp4", "no such file"),
    "directory": (lambda t: t, "is a directory"),
    "empty": (lambda t: ((t / "e.mp4").write_bytes(b"") and t / "e.mp4") or t / "e.mp4", "empty"),
    "text": (lambda t: (t / "x.mp4").write_text("not a video\n" * 100) and t / "x.mp4", "not a video"),
    "truncated": (_truncated, ""),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_error(tmp_path: Path, case: str) -> None:
    make, message = BAD[case]
    media = tmp_path / "media"
    media.mkdir()
    path = make(media)
    res = cli("run", str(path), data=tmp_path / "d")
    assert res.returncode != 0
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    err_lines = [ln for ln in res.stderr.splitlines() if ln.startswith("framescribe: error:")]
    assert len(err_lines) == 1, res.stderr
    assert message in err_lines[0]
    assert str(path.name) in err_lines[0] or case == "directory"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fps", "0"], "fps"),
        (["--fps", "nan"], "fps"),
        (["--segment-seconds", "-3"], "segment_seconds"),
        (["--fps", "30", "--segment-seconds", "60"], "above the frame limit (sampling.max_frames default) of 512"),
        (["--start", "500"], "past the end"),
    ],
)
def test_bad_options_one_line_error(tmp_path: Path, clip_12s: Path, args: list[str], message: str) -> None:
    res = cli("run", str(clip_12s), *args, data=tmp_path / "d")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert message in res.stderr


def test_run_refuses_a_bad_plan_before_any_job_exists(tmp_path: Path, clip_12s: Path) -> None:
    """A plan that cannot work is refused before a job is created (as the REST API does): nothing half-written."""
    res = cli("run", str(clip_12s), "--start", "500", data=tmp_path / "d")
    assert res.returncode == 2 and "past the end" in res.stderr
    listed = cli("jobs", "list", data=tmp_path / "d")
    assert "clip12.mp4" not in listed.stdout
    assert not list((tmp_path / "d").glob("jobs/*")), "no frames were written"
