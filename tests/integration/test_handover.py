"""The analysis pass hands its frames to the segments (issue 19, goal 4): a scene or hybrid job decodes
its video once, and stores the same frames (times, JPEG bytes), thumbs and rows as without the hand-over.
The segment step takes handed frames only when their manifest is complete and matches its plan and budget."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.fakes.ports import RecordingDescriber
from tests.media import VideoTruth, make_video
from worker.adapters.frames.handover import MANIFEST, LocalHandover
from worker.adapters.frames.local import LocalFrames
from worker.adapters.video import pyav
from worker.adapters.video.opencv import OpenCVReader
from worker.adapters.video.pyav import PyAVReader
from worker.bootstrap import build_ports
from worker.config import Settings, load_settings
from worker.core.models import SegmentPlan
from worker.core.money import FrameBudget
from worker.options import JobOptions
from worker.service import pipeline
from worker.service.plan import plan_of_row

CUTS = (3.0, 7.4, 12.0, 16.6, 21.0)
PYAV = SimpleNamespace(backend="pyav")  # a reader that decodes with PyAV


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory: pytest.TempPathFactory) -> VideoTruth:
    """25 s, 15 fps, 320x240 H.264 with hard cuts at CUTS (s); a disc moves in every frame."""
    path = tmp_path_factory.mktemp("handover") / "cuts.mp4"
    return make_video(path, seconds=25, fps=15, cuts_at=CUTS, codec="libx264")


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The number of targets of every reader ``frames`` call (either backend)."""
    calls: list[int] = []
    for cls in (PyAVReader, OpenCVReader):
        original = cls.frames

        def counted(self: Any, targets: Any, *a: Any, _orig: Any = original, **k: Any) -> Any:
            calls.append(len(targets))
            return _orig(self, targets, *a, **k)

        monkeypatch.setattr(cls, "frames", counted)
    yield calls


def settings_in(path: Path, detector: str = "content", **extra: Any) -> Settings:
    return load_settings(
        data_dir=path,
        describer={"kind": "local", "concurrency": 2},
        sampling={"fps": 1, "reader_backend": "pyav", "scene_detector": detector},
        **extra,
    )


def run_job(settings: Settings, video: Path, handover: bool, **opts: Any) -> tuple[Any, str, RecordingDescriber]:
    rec = RecordingDescriber()
    ports = dataclasses.replace(build_ports(settings), describer_for=lambda _o: rec)
    if not handover:
        ports = dataclasses.replace(ports, handover=None)
    job, _ = ports.store.create_job(str(video), video.name, JobOptions.parse(opts).stored())
    summary = pipeline.run_inline(ports, job.id)
    assert summary.state == "done"
    return ports, job.id, rec


def stored(ports: Any, job_id: str) -> list[tuple[Any, ...]]:
    """Every row's plan and text with its frames' times, sizes and JPEG bytes."""
    out = []
    for row in ports.store.segment_rows(job_id):
        frames = ports.store.frames(job_id, row.index)
        files = [(f.n, f.t_ms, f.width, f.height, Path(f.path).read_bytes()) for f in frames]
        out.append((row.index, row.start_ms, row.end_ms, row.fps, row.state, row.description, files))
    return out


@pytest.mark.parametrize("segmenter", ["scene", "hybrid"])
def test_a_job_decodes_once_and_stores_the_same_frames(
    cut_video: VideoTruth, tmp_path: Path, decodes: list[int], segmenter: str
) -> None:
    before, job_b, rec_b = run_job(settings_in(tmp_path / "off"), cut_video.path, False, segmenter=segmenter)
    without = list(decodes)
    decodes.clear()
    after, job_a, rec_a = run_job(settings_in(tmp_path / "on"), cut_video.path, True, segmenter=segmenter)
    rows = list(after.store.segment_rows(job_a))
    assert len(rows) >= len(CUTS) + 1
    assert len(without) == 1 + len(rows), "without the hand-over every segment decodes its frames again"
    # with it only the first shot (3 s: re-sampled with 4 spread times, off any grid) decodes again
    resampled = [len(plan_of_row(after.store, job_a, r.index).targets_ms) for r in rows if r.fps != "1"]
    assert resampled == [4]
    assert decodes == without[:1] + resampled
    assert stored(after, job_a) == stored(before, job_b)  # same rows, frame times and JPEG bytes
    sent_a = sorted(rec_a.requests, key=lambda r: r.plan.index)
    sent_b = sorted(rec_b.requests, key=lambda r: r.plan.index)
    assert [r.plan for r in sent_a] == [r.plan for r in sent_b]
    for a, b in zip(sent_a, sent_b, strict=True):  # the thumbs (hashes, the local describer) are pixel-identical
        assert len(a.thumbs) == len(b.thumbs) > 0
        assert all(np.array_equal(x, y) for x, y in zip(a.thumbs, b.thumbs, strict=True))
    assert not (tmp_path / "on" / "jobs" / job_a / "handover").exists(), "the spill is gone once handed over"


@pytest.mark.parametrize("detector", ["content", "adaptive"])  # adaptive reports a cut 2 frames late
def test_celery_steps_take_the_handed_frames_once(
    cut_video: VideoTruth, tmp_path: Path, decodes: list[int], detector: str
) -> None:
    ports = build_ports(settings_in(tmp_path, detector))
    job, _ = ports.store.create_job(str(cut_video.path), "cuts.mp4", JobOptions.parse({"segmenter": "scene"}).stored())
    indexes = pipeline.plan(ports, job.id)  # the plan task
    assert len(decodes) == 1  # the analysis pass
    states = {i: pipeline.run_segment(ports, job.id, i) for i in indexes}  # the segment tasks, one by one
    assert set(states.values()) == {"done"}
    assert decodes[1:] == [4], "only the re-sampled first shot decodes"
    plan = plan_of_row(ports.store, job.id, 1)
    folder = ports.frames.folder(job.id, plan.index)
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(f.path).name for f in ports.store.frames(job.id, 1))
    with ports.open_source(job) as reader:  # delivered again after its frames were taken: it decodes them
        again = pipeline.sample_segment(ports, reader, plan, folder, JobOptions())
    assert decodes[1:] == [4, len(plan.targets_ms)]
    first = ports.store.frames(job.id, 1)
    assert [(f.t_ms, f.size_bytes) for f in again.frames] == [(f.t_ms, f.size_bytes) for f in first]


@pytest.mark.parametrize("segmenter", ["scene", "hybrid"])
def test_framescribe_run_decodes_once_with_the_same_export(
    cut_video: VideoTruth, tmp_path: Path, decodes: list[int], monkeypatch: pytest.MonkeyPatch, segmenter: str
) -> None:
    from typer.testing import CliRunner

    from worker.cli import _register_command_modules, app
    from worker.service import plan as planning

    _register_command_modules()
    keeper_for = planning.keeper_for
    exports = {}
    for mode in ("off", "on"):
        monkeypatch.setenv("FRAMESCRIBE_DATA_DIR", str(tmp_path / mode))
        monkeypatch.setenv("FRAMESCRIBE_SAMPLING__READER_BACKEND", "pyav")
        monkeypatch.setattr(planning, "keeper_for", keeper_for if mode == "on" else lambda *a: None)
        decodes.clear()
        res = CliRunner().invoke(app, ["run", str(cut_video.path), "--segmenter", segmenter, "--fps", "1"])
        assert res.exit_code == 0, res.output
        job_id = res.output.splitlines()[0].split()[1]
        export = json.loads((tmp_path / mode / "exports" / f"{job_id}.json").read_text())
        segments = export["segments"]
        exports[mode] = [
            (
                s["start_ms"],
                s["end_ms"],
                s["description"],
                [(f["t_ms"], Path(f["path"]).read_bytes()) for f in s["frames"]],
            )
            for s in segments
        ]
        if mode == "off":
            assert len(decodes) == 1 + len(segments)
        else:  # the analysis pass, and the first shot (3 s: re-sampled off the 1 fps grid)
            assert decodes == [decodes[0], 4]
    assert exports["on"] == exports["off"]


def test_a_segment_on_another_machine_decodes_as_before(
    cut_video: VideoTruth, tmp_path: Path, decodes: list[int]
) -> None:
    """Celery without a shared disk: the plan task's machine keeps the frames, a segment task elsewhere
    finds no manifest in its own data folder and decodes, storing what the first machine would have."""
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    here = build_ports(settings_in(tmp_path / "a", database_url=db))
    there = build_ports(settings_in(tmp_path / "b", database_url=db))
    job, _ = here.store.create_job(str(cut_video.path), "cuts.mp4", JobOptions.parse({"segmenter": "scene"}).stored())
    indexes = pipeline.plan(here, job.id)
    assert pipeline.run_segment(there, job.id, indexes[1]) == "done"
    plan = plan_of_row(here.store, job.id, indexes[1])
    assert decodes[1:] == [len(plan.targets_ms)], "the other machine decoded the segment's frames"
    assert pipeline.run_segment(here, job.id, indexes[2]) == "done"
    assert len(decodes) == 2, "the planning machine took its handed frames"
    handed = (tmp_path / "a" / "jobs" / job.id / f"seg_{indexes[1]:05d}" / MANIFEST).is_file()
    assert handed  # left for a redelivery on this machine; the stored frames are the other machine's
    assert all(str(tmp_path / "b") in f.path for f in there.store.frames(job.id, indexes[1]))


def test_a_dry_run_writes_no_frames(cut_video: VideoTruth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from worker.cli import _register_command_modules, app

    _register_command_modules()
    monkeypatch.setenv("FRAMESCRIBE_DATA_DIR", str(tmp_path / "d"))
    res = CliRunner().invoke(app, ["run", str(cut_video.path), "--segmenter", "scene", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "analysed" in res.output  # the analysis pass ran
    assert not (tmp_path / "d" / "jobs").exists()


def test_a_full_disk_costs_the_hand_over_not_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.adapters.frames import handover as module

    def full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "atomic_write", full)
    frames = LocalFrames(tmp_path, max_pixels=64 * 64)
    handover = LocalHandover(frames)
    keeper = handover.keeper("job1", 0, Fraction(1), FrameBudget(64 * 64, 32), 100)
    keeper.offer(0, np.zeros((48, 64, 3), np.uint8), 0, (), "pyav")  # no error
    assert handover.hand_over(keeper, [SegmentPlan(0, 0, 1000, Fraction(1), (0,))]) == 0


def test_a_full_disk_while_handing_over_costs_that_segment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.adapters.frames import handover as module

    frames = LocalFrames(tmp_path, max_pixels=64 * 64)
    handover = LocalHandover(frames)
    keeper = handover.keeper("job1", 0, Fraction(1), FrameBudget(64 * 64, 32), 100)
    keeper.offer(0, np.zeros((48, 64, 3), np.uint8), 0, (), "pyav")
    plan = SegmentPlan(0, 0, 1000, Fraction(1), (0,))

    def full(src: Path, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "_link", full)
    assert handover.hand_over(keeper, [plan]) == 0
    assert not frames.folder("job1", 0).exists() and not (tmp_path / "jobs" / "job1" / "handover").exists()


# -- the manifest: present, complete, matching -----------------------------------------------------
def handed(tmp_path: Path) -> tuple[LocalHandover, SegmentPlan, Path, FrameBudget]:
    """One segment handed two frames (times 0 and 1000) by a pass that offered every frame of 0..1000."""
    frames = LocalFrames(tmp_path, max_pixels=64 * 64)
    handover = LocalHandover(frames)
    budget = FrameBudget(64 * 64, 32)
    keeper = handover.keeper("job1", 0, Fraction(1), budget, 100)
    rng = np.random.default_rng(0)
    prev = None
    for t in range(0, 1100, 100):
        image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        keeper.offer(t, image, 0 if prev is None else prev + 2, (), "pyav")
        prev = t
    plan = SegmentPlan(0, 0, 2000, Fraction(1), (0, 1000))
    assert handover.hand_over(keeper, [plan]) == 1
    return handover, plan, frames.folder("job1", 0), budget


def test_a_complete_matching_set_is_taken_once(tmp_path: Path) -> None:
    handover, plan, folder, budget = handed(tmp_path)
    got = handover.take(folder, plan, budget, PYAV)
    assert handover.take(folder, plan, budget, PYAV) is None
    assert sorted(p.name for p in folder.iterdir()) == ["frame_0000_0000000000ms.jpg", "frame_0001_0000001000ms.jpg"]
    assert got is not None
    refs, thumbs = got
    assert [(r.n, r.t_ms) for r in refs] == [(0, 0), (1, 1000)]
    assert [Path(r.path).name for r in refs] == ["frame_0000_0000000000ms.jpg", "frame_0001_0000001000ms.jpg"]
    assert all(Path(r.path).stat().st_size == r.size_bytes for r in refs)
    assert [t.shape for t in thumbs] == [(48, 64, 3)] * 2


def test_without_a_manifest_nothing_is_taken(tmp_path: Path) -> None:
    handover, plan, folder, budget = handed(tmp_path)
    (folder / MANIFEST).unlink()  # the hand-over stopped before its last write
    assert handover.take(folder, plan, budget, PYAV) is None


def test_a_missing_or_changed_frame_is_not_taken(tmp_path: Path) -> None:
    handover, plan, folder, budget = handed(tmp_path)
    name = json.loads((folder / MANIFEST).read_text())["frames"][1][2]
    (folder / name).write_bytes(b"half")
    assert handover.take(folder, plan, budget, PYAV) is None
    (folder / name).unlink()
    assert handover.take(folder, plan, budget, PYAV) is None


def test_other_targets_or_settings_are_not_taken(tmp_path: Path) -> None:
    handover, plan, folder, budget = handed(tmp_path)
    assert handover.take(folder, plan, budget, SimpleNamespace(backend="opencv")) is None  # another decoder
    assert handover.take(folder, dataclasses.replace(plan, targets_ms=(0, 1001)), budget, PYAV) is None
    assert handover.take(folder, plan, FrameBudget(32 * 32, 32), PYAV) is None
    assert handover.take(folder, plan, FrameBudget(64 * 64, 28), PYAV) is None


def test_a_segment_without_every_target_kept_gets_nothing(tmp_path: Path) -> None:
    frames = LocalFrames(tmp_path, max_pixels=64 * 64)
    handover = LocalHandover(frames)
    keeper = handover.keeper("job1", 0, Fraction(1), FrameBudget(64 * 64, 32), 100)
    image = np.zeros((48, 64, 3), np.uint8)
    keeper.offer(0, image, 0, (), "pyav")
    keeper.offer(1000, image, None, (), "pyav")  # a frame may lie between 0 and 1000: not the exact frame of 1000
    plan = SegmentPlan(0, 0, 2000, Fraction(1), (0, 1000))
    assert handover.hand_over(keeper, [plan]) == 0
    assert not (frames.folder("job1", 0) / MANIFEST).exists()


def test_four_decoder_threads_read_the_same_frames(
    cut_video: VideoTruth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With more frame threads the decoder holds more frames when the reader pauses an interval; the reader
    must resume that interval rather than drain the decoder mid-way (a drain loses the reference frames its
    later targets need: the first frame after a cut came out 133 ms late, the next ones damaged)."""
    monkeypatch.setattr(pyav, "decoder_threads", lambda: 4)
    before, job_b, _ = run_job(settings_in(tmp_path / "off"), cut_video.path, False, segmenter="scene")
    after, job_a, _ = run_job(settings_in(tmp_path / "on"), cut_video.path, True, segmenter="scene")
    assert stored(after, job_a) == stored(before, job_b)
    monkeypatch.setattr(pyav, "decoder_threads", lambda: 1)
    single, job_s, _ = run_job(settings_in(tmp_path / "one"), cut_video.path, False, segmenter="scene")
    assert stored(before, job_b) == stored(single, job_s)  # and the frames one decoding thread reads
