"""No work done twice at planning (issue 19, goal 4): a plan task delivered again to a job that is
already planned uses the stored plan — no second probe, no second analysis pass, the same segments —
while a retried job (queued again) is planned anew."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fakes.ports import FakeAnalyser, FakeReader, fake_ports
from worker.config import Settings, load_settings
from worker.core.segmenters import Findings, MotionParams
from worker.options import JobOptions
from worker.service import jobs
from worker.service import plan as planning
from worker.service.segment import run_segment
from worker.service.sources import Source

SCENE = JobOptions(fps=2, segment_seconds=2, segmenter="scene")


class CountingAnalyser(FakeAnalyser):
    """One cut at 5 s; counts analysis passes."""

    def __init__(self) -> None:
        self.passes = 0

    def analyse(self, reader: Any, start_ms: int, end_ms: int, motion: MotionParams) -> Findings:
        self.passes += 1
        return Findings(start_ms=start_ms, until_ms=end_ms, cuts_ms=(5000,), events=(), samples=100)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, describer={"kind": "local"}, allowed_roots=[tmp_path])


def counted(settings: Settings) -> tuple[Any, Any, CountingAnalyser, list[str]]:
    ports, store, _ = fake_ports(settings)
    analyser, opened = CountingAnalyser(), []
    ports.analyser = analyser

    def reader_for(path: str) -> FakeReader:
        opened.append(path)
        return FakeReader(path)

    ports.reader_for = reader_for
    return ports, store, analyser, opened


def test_a_redelivered_plan_task_uses_the_stored_plan(settings: Settings) -> None:
    ports, store, analyser, opened = counted(settings)
    job, _ = jobs.create(ports, Source("/videos/clip.mp4", "clip.mp4"), SCENE)
    first = planning.plan(ports, job.id)
    assert analyser.passes == 1 and len(opened) == 1
    rows = [(r.index, r.start_ms, r.end_ms) for r in store.segment_rows(job.id)]
    assert any(start == 5000 for _, start, _ in rows), rows  # the analysis's cut shaped the plan
    events: list[tuple[str, dict[str, Any]]] = []
    ports.on_event = lambda kind, data: events.append((kind, data))
    again = planning.plan(ports, job.id)  # the same task, delivered again
    assert again == first
    assert analyser.passes == 1 and len(opened) == 1, "no second probe or analysis pass"
    assert [(r.index, r.start_ms, r.end_ms) for r in store.segment_rows(job.id)] == rows
    assert events == [("planned", {"job_id": job.id, "segments": len(first), "video": store.get_job(job.id).video})]
    assert store.get_job(job.id).state == "running"


def test_a_retried_job_is_planned_again(settings: Settings) -> None:
    ports, store, analyser, opened = counted(settings)
    job, _ = jobs.create(ports, Source("/videos/clip.mp4", "clip.mp4"), SCENE)
    indexes = planning.plan(ports, job.id)
    for index in indexes[1:]:
        run_segment(ports, job.id, index)
    assert store.claim_segment(job.id, indexes[0]) and store.fail_segment(job.id, indexes[0], "boom")
    store.set_job_state(job.id, "partial")
    assert jobs.retry(ports, job.id) == 1
    assert store.get_job(job.id).state == "queued"
    before = len(opened)
    assert planning.plan(ports, job.id) == indexes
    assert analyser.passes == 2 and len(opened) == before + 1  # retry re-probes and re-checks the budget


def test_a_job_planned_but_not_yet_running_is_planned_in_full(settings: Settings) -> None:
    """Segments stored but the job still queued (planning stopped before it finished): plan again."""
    ports, store, analyser, _ = counted(settings)
    job, _ = jobs.create(ports, Source("/videos/clip.mp4", "clip.mp4"), SCENE)
    planning.plan(ports, job.id)
    store.set_job_state(job.id, "queued")
    planning.plan(ports, job.id)
    assert analyser.passes == 2
