"""A PyAV reader call stops decoding when its last target is served: the rest of that keyframe interval stays
buffered and is decoded only if a later call needs it (a later call for the next interval decodes nothing of
the first; frames stay those of exact decoding)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ffmpeg_video
from worker.adapters.video.pyav import PyAVReader


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s, 320x240, 30 fps H.264 with B-frames (libx264's default), keyframe every 100 frames (3.33 s)."""
    return ffmpeg_video(tmp_path_factory.mktemp("pause") / "gop100.mp4", seconds=20, rate=30, gop=100)


def test_a_call_leaves_the_rest_of_its_interval_undecoded(long_gop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fed: list[float | None] = []
    decode = PyAVReader._decode

    def counting(self: PyAVReader, pkt: Any) -> None:
        fed.append(self._pkt_ms(pkt))
        decode(self, pkt)

    monkeypatch.setattr(PyAVReader, "_decode", counting)
    with PyAVReader(long_gop) as reader:
        first = [t for t, _ in reader.frames([500])]
        fed.clear()
        second = [t for t, _ in reader.frames([3500])]  # the next keyframe is at 3333 ms
    assert first == [500] and second == [3500]
    assert all(ms is not None and ms >= 3333 for ms in fed), "nothing of the first interval after 500 ms"
    assert len(fed) <= 10


def test_a_later_call_in_the_same_interval_resumes_exactly(long_gop: Path) -> None:
    with PyAVReader(long_gop) as reader:
        assert [t for t, _ in reader.frames([500])] == [500]
        resumed = [(t, img.tobytes()) for t, img in reader.frames([1500, 2500, 4000])]
    with PyAVReader(long_gop) as fresh:
        exact = [(t, img.tobytes()) for t, img in fresh.frames([1500, 2500, 4000])]
    assert [t for t, _ in resumed] == [1500, 2500, 4000] and resumed == exact
