"""Shared fixtures. Media is generated, never committed; each fixture says what it holds."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.config import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "street.mp4"


@pytest.fixture(autouse=True)
def _fresh_breaker() -> Iterator[None]:
    """The DashScope circuit breaker is process-wide: one test's outage must not stop the next test."""
    from worker.adapters.describers.dashscope import shared_breaker

    shared_breaker.cache_clear()
    yield
    shared_breaker.cache_clear()


@pytest.fixture(autouse=True)
def _no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A test that logs an ERROR fails: errors must be handled, not just printed."""
    yield
    errors = [
        r
        for r in caplog.get_records("call")
        if r.levelno >= logging.ERROR and not r.name.startswith(("celery", "dashscope"))
    ]
    if errors and not os.environ.get("FRAMESCRIBE_ALLOW_ERROR_LOGS"):
        pytest.fail("ERROR logged: " + "; ".join(r.getMessage() for r in errors[:3]))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings on a fresh data dir under tmp_path (SQLite store inside it), local describer."""
    monkeypatch.setenv("FRAMESCRIBE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    return load_settings(describer={"kind": "local"})


def ffmpeg_video(
    path: Path,
    *,
    seconds: float,
    size: str = "320x240",
    rate: int = 25,
    gop: int = 50,
    source: str = "testsrc2",
) -> Path:
    """An H.264 clip from ffmpeg's lavfi ``source`` (moving pattern), ``seconds`` long at ``rate`` fps."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (scripts/bootstrap installs it)")
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"{source}=size={size}:rate={rate}",
         "-t", str(seconds), "-c:v", "libx264", "-g", str(gop), "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def clip_12s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s, 320x240, 25 fps H.264 testsrc2 (moving pattern everywhere), keyframe every 2 s."""
    return ffmpeg_video(tmp_path_factory.mktemp("media") / "clip12.mp4", seconds=12)


@pytest.fixture(scope="session")
def example_clip() -> Path:
    """The committed example clip (scripts/make_example.py renders it)."""
    if not EXAMPLE.exists():
        pytest.skip("examples/street.mp4 is missing: run scripts/make_example.py")
    return EXAMPLE
