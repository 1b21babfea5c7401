"""Every format through ``framescribe export`` to a file, and the subtitles read back by ffmpeg's own demuxers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import srt
import webvtt
from typer.testing import CliRunner

from worker.adapters.stores.sql import SqlResultStore
from worker.cli import _register_command_modules, app
from worker.core.exports import renderer
from worker.core.models import Description, FrameRef, SegmentPlan, VideoInfo

_register_command_modules()
TEXTS = [
    "A red car parks by the gate.",
    "Two people talk & one points at <the camera>.",
    "The car drives off.\n\nThe street is empty.",
]


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Path, str]:
    """A data dir whose SQLite store holds one done job: 3 segments of 10 s at 25 fps."""
    data = tmp_path / "data"
    store = SqlResultStore(f"sqlite:///{data / 'framescribe.db'}")
    job, _ = store.create_job("/videos/gate.mp4", "gate.mp4", {})
    plans = [SegmentPlan(i, i * 10_000, (i + 1) * 10_000, Fraction(1), (i * 10_000,)) for i in range(3)]
    store.plan_job(job.id, VideoInfo(30_000, 25.0, 750, 640, 360, "avc1", 1), plans)
    for i, text in enumerate(TEXTS):
        store.claim_segment(job.id, i)
        frame = FrameRef(0, i * 10_000, f"/f/{i}.jpg", 640, 352, 10)
        store.save_segment(job.id, i, Description(text, {"threat_level": i}), [frame])
    store.close()
    return data, job.id


def export(data: Path, job_id: str, fmt: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``framescribe export`` as a subprocess: the real entry point, exit codes and stderr."""
    env = {**os.environ, "FRAMESCRIBE_DATA_DIR": str(data)}
    args = [sys.executable, "-m", "worker.cli", "export", job_id, "--format", fmt, "--out", str(out), *extra]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)


def export_in_process(data: Path, job_id: str, fmt: str, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same command run in this process (fast enough to loop over every format)."""
    monkeypatch.setenv("FRAMESCRIBE_DATA_DIR", str(data))
    res = CliRunner().invoke(app, ["export", job_id, "--format", fmt, "--out", str(out)])
    assert res.exit_code == 0, f"{fmt}: {res.output}"


def ffprobe_packets(path: Path) -> list[tuple[float, float]]:
    """(start, duration) in seconds of each subtitle packet as ffprobe's demuxer reads the file."""
    res = subprocess.run(
        ["ffprobe", "-v", "error", "-i", str(path), "-show_entries", "packet=pts_time,duration_time", "-of", "json"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return [(float(p["pts_time"]), float(p["duration_time"])) for p in json.loads(res.stdout)["packets"]]


def test_every_format_exports_through_the_cli(
    seeded: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, job_id = seeded
    for fmt in ("json", "csv", "vtt", "srt", "chapters", "edl", "otio", "md"):
        _, _, ext = renderer(fmt)
        out = tmp_path / f"export.{ext}"
        export_in_process(data, job_id, fmt, out, monkeypatch)
        assert out.stat().st_size > 0
    assert len(json.loads((tmp_path / "export.json").read_text())["segments"]) == 3
    subs = list(srt.parse((tmp_path / "export.srt").read_text()))
    # SRT has no escapes: markup characters become look-alikes (the one subtitle sanitiser)
    assert [s.content for s in subs] == [t.replace("\n\n", "\n").replace("<", "‹").replace(">", "›") for t in TEXTS]
    cues = webvtt.read(str(tmp_path / "export.vtt"))
    assert [c.start for c in cues] == ["00:00:00.000", "00:00:10.000", "00:00:20.000"]
    res = export(data, job_id, "edl", tmp_path / "hi.edl", "--min-score", "0.6")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    highlights = (tmp_path / "hi.edl").read_text()
    assert highlights.count("* FROM CLIP NAME") == 1 and "segment 2 score 0.67" in highlights, "threat 2 of 3"
    bad = export(data, job_id, "docx", tmp_path / "x.docx")
    assert bad.returncode == 2 and "unknown export format 'docx'" in bad.stderr


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffmpeg is not installed (scripts/bootstrap)")
def test_ffmpeg_reads_the_subtitles_at_the_true_times(
    seeded: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, job_id = seeded
    for fmt, name in (("vtt", "subs.vtt"), ("srt", "subs.srt"), ("chapters", "chapters.vtt")):
        out = tmp_path / name
        export_in_process(data, job_id, fmt, out, monkeypatch)
        assert ffprobe_packets(out) == [(0.0, 10.0), (10.0, 10.0), (20.0, 10.0)], fmt
    converted = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(tmp_path / "subs.vtt"), "-f", "srt", "-"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    texts = [s.content for s in srt.parse(converted.stdout)]
    assert texts[1] == "Two people talk & one points at <the camera>.", "ffmpeg decodes our entities back"
