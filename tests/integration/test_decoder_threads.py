"""The PyAV reader asks FFmpeg for two decoder threads per CPU it may run on, at most 16
(``pyav_probe.decoder_threads``), and reads the same frames at the same times as one decoding thread does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.media import make_lavfi_video
from worker.adapters.video import pyav
from worker.adapters.video.pyav import PyAVReader


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("threads") / "clip.mp4"
    make_lavfi_video(path, seconds=3, size=(160, 120), fps=10, gop=30)
    return path


def test_two_decoder_threads_per_usable_cpu_at_most_sixteen(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pyav.decoder_threads() == min(16, 2 * len(os.sched_getaffinity(0)))
    with PyAVReader(clip) as reader:
        reader.probe()
        assert reader._stream.codec_context.thread_count == pyav.decoder_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert pyav.decoder_threads() == 16
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert pyav.decoder_threads() == 2


def test_same_frames_as_a_single_thread(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    targets = [0, 500, 1000, 1500, 2000, 2500]
    with PyAVReader(clip) as reader:
        threaded = [(t, img.tobytes()) for t, img in reader.frames(targets)]
    monkeypatch.setattr(pyav, "decoder_threads", lambda: 1)
    with PyAVReader(clip) as reader:
        single = [(t, img.tobytes()) for t, img in reader.frames(targets)]
    assert [t for t, _ in threaded] == [t for t, _ in single] and len(single) == len(targets)
    assert threaded == single
