"""The local describer on media with known ground truth (motion events, cuts, light)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.media import make_video
from worker.adapters.describers.local import LocalDescriber
from worker.adapters.video.opencv import OpenCVReader


def _frames(path: Path, start_ms: int, end_ms: int, step_ms: int = 250) -> list[tuple[int, object]]:
    with OpenCVReader(path) as r:
        return list(r.frames(list(range(start_ms, end_ms, step_ms))))


@pytest.fixture(scope="module")
def still_with_event(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s, 320x240, 10 fps, still background; one object moves from 4.0 s to 6.0 s only."""
    return make_video(tmp_path_factory.mktemp("m") / "still.mp4", seconds=8, fps=10, static=True,
                      motion_events=[(4.0, 6.0)], codec="libx264").path  # fmt: skip


@pytest.fixture(scope="module")
def two_shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s, 320x240, 10 fps, a hard cut at 3.0 s; a moving object in both shots."""
    return make_video(tmp_path_factory.mktemp("m") / "cut.mp4", seconds=6, fps=10, cuts_at=[3.0],
                      codec="libx264").path  # fmt: skip


def test_still_span_has_no_motion(still_with_event: Path) -> None:
    facts = LocalDescriber(people=False).analyse(_frames(still_with_event, 0, 3500))  # type: ignore[arg-type]
    assert facts["motion"]["level"] == "none" and facts["motion"]["peak_ms"] is None
    assert facts["cuts_ms"] == []


def test_event_span_has_motion_peaking_inside_it(still_with_event: Path) -> None:
    facts = LocalDescriber(people=False).analyse(_frames(still_with_event, 3000, 7000))  # type: ignore[arg-type]
    assert facts["motion"]["level"] != "none"
    assert 4000 <= facts["motion"]["peak_ms"] <= 6250


def test_cut_found_at_its_time(two_shots: Path) -> None:
    facts = LocalDescriber(people=False).analyse(_frames(two_shots, 0, 6000))  # type: ignore[arg-type]
    assert facts["cuts_ms"] == [3000]
    sentence = LocalDescriber.sentence(facts)
    assert "1 cut at 00:03" in sentence and "not a language model" in sentence


def test_deterministic(two_shots: Path) -> None:
    frames = _frames(two_shots, 0, 6000)
    d = LocalDescriber()
    assert d.analyse(frames) == d.analyse(frames)  # type: ignore[arg-type]


def test_example_clip_people_day_and_night(example_clip: Path) -> None:
    d = LocalDescriber()
    day = d.analyse(_frames(example_clip, 0, 10_000, 1000))  # type: ignore[arg-type]
    night = d.analyse(_frames(example_clip, 10_000, 20_000, 1000))  # type: ignore[arg-type]
    assert day["people"]["max"] == 2, "the clip has two pedestrians"
    assert day["light"] == "bright" and night["light"] == "dark"
    assert night["people"]["max"] == 0
