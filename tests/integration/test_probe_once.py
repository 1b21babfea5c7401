"""A video is probed once per process (issue 19, goal 4): a second reader of the same, unchanged file
reuses what the first probe found (no second demux of the head and the tail), reads the same frames at the
same times; a changed file, or stricter limits, are probed anew."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.media import make_lavfi_video
from worker.adapters.video import open_reader, probes
from worker.adapters.video.opencv import OpenCVReader
from worker.adapters.video.pyav import PyAVReader
from worker.config import LimitSettings
from worker.errors import VideoOpenError

TARGETS = [0, 1000, 2000, 3000]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("probe") / "clip.mp4"
    make_lavfi_video(path, seconds=4, size=(160, 120), fps=10, gop=10)
    return path


@pytest.fixture(autouse=True)
def fresh_memo() -> Iterator[None]:
    probes.forget()
    yield
    probes.forget()


def counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the expensive probe steps of both backends."""
    calls = {"pyav": 0, "opencv": 0}
    pyav_facts, cv_duration = PyAVReader._measure_facts, OpenCVReader._true_duration_ms

    def facts(self: PyAVReader, fps: float) -> Any:
        calls["pyav"] += 1
        return pyav_facts(self, fps)

    def duration(self: OpenCVReader, fps: float, count: int) -> int:
        calls["opencv"] += 1
        return cv_duration(self, fps, count)

    monkeypatch.setattr(PyAVReader, "_measure_facts", facts)
    monkeypatch.setattr(OpenCVReader, "_true_duration_ms", duration)
    return calls


def read(path: Path, backend: str, limits: LimitSettings | None = None) -> tuple[Any, list[int], list[bytes]]:
    with open_reader(path, limits or LimitSettings(), backend) as reader:
        info = reader.probe()
        got = list(reader.frames(TARGETS))
    return info, [t for t, _ in got], [img.tobytes() for _, img in got]


@pytest.mark.parametrize("backend", ["pyav", "opencv", "auto"])
def test_a_second_reader_of_the_same_file_does_not_probe_again(
    clip: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = counting(monkeypatch)
    first = read(clip, backend)
    probed = dict(calls)
    assert sum(probed.values()) >= 1
    second = read(clip, backend)
    assert calls == probed, "the second reader probed again"
    assert second == first  # same facts, same frames at the same times
    assert len(first[1]) == len(TARGETS)


def test_a_changed_file_is_probed_again(clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch)
    path = tmp_path / "v.mp4"
    shutil.copy(clip, path)
    info, _, _ = read(path, "pyav")
    make_lavfi_video(tmp_path / "longer.mp4", seconds=6, size=(160, 120), fps=10, gop=10)
    os.replace(tmp_path / "longer.mp4", path)  # the same name, another file
    longer, times, _ = read(path, "pyav")
    assert calls["pyav"] == 2
    assert info.duration_ms == 4000 and longer.duration_ms == 6000
    assert times == TARGETS


def test_stricter_limits_are_checked_again(clip: Path) -> None:
    read(clip, "pyav")
    with pytest.raises(VideoOpenError, match="longer than the limit"):
        read(clip, "pyav", LimitSettings(max_duration_s=2))
