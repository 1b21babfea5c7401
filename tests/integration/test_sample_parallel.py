"""``framescribe sample`` on more than one CPU: targets cut into chunks at keyframes, each decoded by its own
single-threaded reader in a worker process, give the same frames (the same JPEG bytes) at the same times as one
reader and as exact decoding; and a reader call leaves the rest of its keyframe interval undecoded."""

from __future__ import annotations

import csv
import itertools
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ffmpeg_video
from tests.integration.test_sample_cli import reference_times, rows
from worker.adapters.frames import sampler
from worker.adapters.frames.sampler import key_chunks, run_sample, sample_workers
from worker.adapters.video import open_reader
from worker.adapters.video.pyav import PyAVReader
from worker.errors import DecodeError


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s, 320x240, 30 fps H.264 with B-frames (libx264's default), keyframe every 100 frames (3.33 s)."""
    return ffmpeg_video(tmp_path_factory.mktemp("par") / "gop100.mp4", seconds=20, rate=30, gop=100)


def _written(folder: Path) -> list[tuple[str, str, bytes]]:
    return [(r["n"], r["pts_ms"], (folder / r["file"]).read_bytes()) for r in rows(folder)]


@pytest.mark.parametrize("fps", [1.0, 2.5])
def test_parallel_chunks_write_what_one_reader_writes(
    long_gop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fps: float
) -> None:
    calls: list[int] = []
    parallel = sampler._parallel

    def spy(*args: Any) -> Any:
        calls.append(args[2])
        return parallel(*args)

    monkeypatch.setattr(sampler, "_parallel", spy)
    monkeypatch.setattr(sampler, "decoder_threads", lambda: 2)
    par = run_sample(long_gop, tmp_path / "par", fps)
    assert calls == [4], "two decoding processes per CPU"
    monkeypatch.setattr(sampler, "decoder_threads", lambda: 1)
    one = run_sample(long_gop, tmp_path / "one", fps)
    assert calls == [4], "one CPU: one reader"
    assert par.frames == one.frames == len(rows(tmp_path / "par")) == round(20 * fps)
    assert _written(tmp_path / "par") == _written(tmp_path / "one")
    times = [int(r["pts_ms"]) for r in rows(tmp_path / "par")]
    assert times == reference_times(long_gop, 0, 20_000, Fraction(fps)), "exact decoding's frames"


def test_a_frame_serving_two_chunks_is_written_once(tmp_path: Path) -> None:
    video = ffmpeg_video(tmp_path / "one_fps.mp4", seconds=6, rate=1, gop=2)  # a frame every second
    run_sample(video, tmp_path / "one", 2.0, end_s=2.0)  # targets 0, 500, 1000, 1500: frames 0, 1000, 2000
    (tmp_path / "two").mkdir()
    with (tmp_path / "two" / "frames.csv").open("w", newline="") as fh:
        out = sampler._Output(tmp_path / "two", sampler.SampleWriter(0), csv.writer(fh))
        chunks = iter([[0, 500], [1000, 1500]])  # the first ends on frame 1000, the second starts on it
        sampler._parallel(lambda: open_reader(video, threads=1), chunks, 2, out)
    got = [p.name for p in sorted((tmp_path / "two").glob("*.jpg"))]
    assert got == [r["file"] for r in rows(tmp_path / "one")]
    assert [int(r["pts_ms"]) for r in rows(tmp_path / "one")] == [0, 1000, 2000]


def test_chunks_are_cut_just_after_keyframes() -> None:
    keys = [0.0, 3333.3, 6666.7, 10000.0]
    targets = list(range(0, 13_000, 1000))
    chunks = list(key_chunks(iter(targets), keys, span_ms=4000))
    assert [t for c in chunks for t in c] == targets
    assert chunks == [[0, 1000, 2000, 3000], [4000, 5000, 6000, 7000, 8000, 9000], [10_000, 11_000, 12_000]]
    for before, chunk in itertools.pairwise(chunks):
        assert any(before[-1] < k <= chunk[0] for k in keys), "each chunk decodes from its own keyframe"
        assert chunk[0] - before[0] >= 4000


def test_workers_only_where_chunks_start_at_keyframes(long_gop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampler, "decoder_threads", lambda: 2)
    with open_reader(long_gop) as reader:
        workers, keys = sample_workers(reader, 1.0, "auto")
        assert workers == 4 and len(keys) == 6 and keys[0] == 0
        assert sample_workers(reader, 30.0, "auto")[0] == 1, "100 targets per keyframe interval"
        assert sample_workers(reader, 1.0, "opencv")[0] == 1
    monkeypatch.setattr(sampler, "decoder_threads", lambda: 1)
    with open_reader(long_gop) as reader:
        assert sample_workers(reader, 1.0, "auto") == (1, [])


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


def test_a_worker_error_reaches_the_caller(long_gop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = PyAVReader.frames

    def failing(self: PyAVReader, targets: list[int], **kw: Any) -> Any:
        if targets[0] >= 10_000:
            raise DecodeError("broken at 10 s", at_ms=10_000)
        yield from frames(self, targets, **kw)

    monkeypatch.setattr(PyAVReader, "frames", failing)  # the forked workers inherit it
    monkeypatch.setattr(sampler, "decoder_threads", lambda: 2)
    with pytest.raises(DecodeError, match="broken at 10 s") as err:
        run_sample(long_gop, tmp_path, 1.0)
    assert err.value.at_ms == 10_000
    assert not (tmp_path / "frames.csv").exists(), "no CSV for a run that failed"
    assert [int(p.name.split("_")[2][:-6]) for p in sorted(tmp_path.glob("*.jpg"))] == list(range(0, 10_000, 1000))
