"""The job service on in-memory fakes (tests/fakes/ports.py): no SQLite, no OpenCV, no broker.

A 12 s synthetic video in 2 s segments at 2 fps -> 6 segments of 4 frames.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.fakes.ports import FakeDescriber, FakeEnqueuer, fake_ports
from worker.config import Settings, load_settings
from worker.core.models import Description
from worker.core.ports import DescribeRequest
from worker.errors import BudgetExceeded, ConfigError, DescriberRejected, JobConflict, QueueUnavailable
from worker.options import JobOptions
from worker.service import jobs
from worker.service import plan as planning
from worker.service.segment import run_segment
from worker.service.sources import Source

N = 6
OPTS = JobOptions(fps=2, segment_seconds=2)
DASHSCOPE = JobOptions(fps=2, segment_seconds=2, describer="dashscope")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, describer={"kind": "local"}, allowed_roots=[tmp_path])


def source() -> Source:
    return Source("/videos/clip.mp4", "clip.mp4")


def test_run_plans_describes_and_finishes_once(settings: Settings) -> None:
    ports, store, queue = fake_ports(settings)
    job, created = jobs.create(ports, source(), OPTS, webhook_url="https://example.com/hook")
    assert created and job.state == "queued"
    summary = jobs.run(ports, job.id)
    assert summary.state == "done" and summary.segments_done == N
    assert [(r.index, r.state, r.frame_count) for r in store.segment_rows(job.id)] == [(i, "done", 4) for i in range(N)]
    assert store.get_job(job.id).state == "done"
    assert queue.webhooks == [job.id]
    assert jobs.finish(ports, job.id) is None  # summarised once: a second finish does nothing
    assert queue.webhooks == [job.id]


def test_finish_is_won_by_exactly_one_caller(settings: Settings) -> None:
    ports, store, queue = fake_ports(settings)
    job, _ = jobs.create(ports, source(), OPTS, webhook_url="https://example.com/hook")
    for index in planning.plan(ports, job.id):
        assert run_segment(ports, job.id, index) == "done"
    won: list[bool] = []
    threads = [threading.Thread(target=lambda: won.append(jobs.finish(ports, job.id) is not None)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False] * 7 + [True]
    assert queue.webhooks == [job.id] and store.get_job(job.id).state == "done"


def test_missing_api_key_fails_the_job_with_its_reason(settings: Settings) -> None:
    ports, store, queue = fake_ports(settings, missing_key=True)
    job, _ = jobs.create(ports, source(), DASHSCOPE, webhook_url="https://example.com/hook")
    with pytest.raises(ConfigError):
        jobs.run(ports, job.id)
    ended = store.get_job(job.id)
    assert ended.state == "failed" and ended.error is not None and "DASHSCOPE_API_KEY" in ended.error
    assert ended.summary is not None and ended.summary["state"] == "failed"
    assert list(store.segment_rows(job.id)) == [] and queue.webhooks == [job.id]


def test_budget_cap_before_the_run_fails_without_a_call(settings: Settings) -> None:
    describer = FakeDescriber("dashscope")
    ports, store, _ = fake_ports(settings, describer)
    job, _ = jobs.create(ports, source(), JobOptions(**DASHSCOPE.stored(), max_calls=2))
    with pytest.raises(BudgetExceeded, match="cap of 2"):
        jobs.run(ports, job.id)
    assert store.get_job(job.id).state == "failed" and describer.calls == []


def test_budget_cap_during_the_run_stops_cleanly(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimate can be wrong: the guard while running holds on its own (pre-flight check off)."""
    monkeypatch.setattr(planning, "check_budget", lambda *a: None)
    describer = FakeDescriber("dashscope", video_tokens=100)
    ports, store, _ = fake_ports(settings, describer)
    job, _ = jobs.create(ports, source(), JobOptions(**DASHSCOPE.stored(), max_calls=2))
    summary = jobs.run(ports, job.id)
    assert summary.state == "partial" and len(describer.calls) == 2
    rows = list(store.segment_rows(job.id))
    assert [r.state for r in rows] == ["done", "done", "failed"] + ["cancelled"] * (N - 3)  # as under Celery
    assert all("cap of 2" in (r.error or "") for r in rows[2:])


def test_cancel_summarises_at_once_and_refuses_twice(settings: Settings) -> None:
    ports, store, queue = fake_ports(settings)
    job, _ = jobs.create(ports, source(), OPTS, webhook_url="https://example.com/hook")
    planning.plan(ports, job.id)
    for index in (0, 1):
        run_segment(ports, job.id, index)
    assert jobs.cancel(ports, job.id) == N - 2
    ended = store.get_job(job.id)
    assert ended.state == "cancelled" and ended.summary is not None and ended.summary["segments_done"] == 2
    assert ended.summary["state"] == "cancelled"  # as the job says (it was "partial": 2 of 6 described)
    assert queue.webhooks == [job.id]
    assert run_segment(ports, job.id, 2) == "cancelled"  # a late task does nothing
    with pytest.raises(JobConflict) as info:
        jobs.cancel(ports, job.id)
    assert info.value.code == "already_ended"


def test_cancel_returns_summarised_when_a_worker_wins_the_summary_claim(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A segment task stopped by the cancel may claim the summary a moment before the cancel does (seen
    under Celery): the cancel still returns only once that worker's summary is stored."""
    ports, store, queue = fake_ports(settings)
    job, _ = jobs.create(ports, source(), OPTS, webhook_url="https://example.com/hook")
    planning.plan(ports, job.id)
    run_segment(ports, job.id, 0)
    real_finish = jobs.finish
    worker_done = threading.Event()

    def the_worker_wins(p: object, job_id: str, reason: str | None = None) -> None:
        def worker_finishes() -> None:
            worker_done.wait(0.3)  # the worker's summary lands after the cancel lost the claim
            real_finish(ports, job_id)

        threading.Thread(target=worker_finishes, daemon=True).start()
        return None

    monkeypatch.setattr(jobs, "finish", the_worker_wins)
    assert jobs.cancel(ports, job.id) == N - 1
    ended = store.get_job(job.id)
    assert ended.state == "cancelled" and ended.summary is not None and ended.summary["segments_done"] == 1
    assert queue.webhooks == [job.id]


def test_a_job_cancelled_before_any_segment_was_described_says_cancelled_in_its_summary(settings: Settings) -> None:
    ports, store, _ = fake_ports(settings)
    job, _ = jobs.create(ports, source(), OPTS)
    planning.plan(ports, job.id)
    assert jobs.cancel(ports, job.id) == N
    ended = store.get_job(job.id)
    assert ended.state == "cancelled" and ended.error is None, ended.error  # not "no segment could be described"
    assert ended.summary is not None and ended.summary["state"] == "cancelled" and ended.summary["segments_done"] == 0


class RejectsOnce(FakeDescriber):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.reject = {index}

    def describe(self, request: DescribeRequest) -> Description:
        if request.plan.index in self.reject:
            self.reject.discard(request.plan.index)
            raise DescriberRejected(f"segment {request.plan.index} refused")
        return super().describe(request)


def test_retry_of_a_partial_job_replans_and_runs_only_what_failed(settings: Settings) -> None:
    describer = RejectsOnce(3)
    ports, store, queue = fake_ports(settings, describer)
    job, _ = jobs.create(ports, source(), OPTS)
    assert jobs.run(ports, job.id).state == "partial"
    store.set_job_state(job.id, "running")  # as if still live
    with pytest.raises(JobConflict) as live:
        jobs.retry(ports, job.id)
    assert live.value.code == "not_retryable"
    store.set_job_state(job.id, "partial")
    calls = len(describer.calls)
    assert jobs.retry(ports, job.id) == 1
    assert queue.jobs == [job.id] and store.get_job(job.id).state == "queued"
    assert jobs.run(ports, job.id).state == "done"  # what the queue does with it
    assert describer.calls[calls:] == [3]
    with pytest.raises(JobConflict) as done:
        jobs.retry(ports, job.id)
    assert done.value.code == "not_retryable"


def test_retry_of_a_job_that_failed_before_planning_plans_it_again(settings: Settings) -> None:
    ports, store, queue = fake_ports(settings, missing_key=True)
    job, _ = jobs.create(ports, source(), DASHSCOPE)
    with pytest.raises(ConfigError):
        jobs.run(ports, job.id)
    assert jobs.retry(ports, job.id) == 0
    assert queue.jobs == [job.id] and store.get_job(job.id).state == "queued"


def test_submit_withdraws_the_job_when_the_queue_is_down(settings: Settings) -> None:
    class Down(FakeEnqueuer):
        def enqueue_job(self, job_id: str) -> None:
            raise QueueUnavailable("the job queue is not reachable")

    ports, store, _ = fake_ports(settings)
    ports.enqueuer = Down()
    with pytest.raises(QueueUnavailable):
        jobs.submit(ports, source(), OPTS)
    assert store.jobs == {}
    ports.enqueuer = queue = FakeEnqueuer()
    job, created = jobs.submit(ports, source(), OPTS, idempotency_key="k")
    again, created_again = jobs.submit(ports, source(), OPTS, idempotency_key="k")
    assert created and not created_again and again.id == job.id and queue.jobs == [job.id]


def test_delete_removes_the_job_and_its_frames(settings: Settings) -> None:
    ports, store, _ = fake_ports(settings)
    job, _ = jobs.create(ports, source(), OPTS)
    jobs.run(ports, job.id)
    frames = ports.frames
    assert any(job.id in k for k in frames.written)  # type: ignore[attr-defined]
    jobs.delete(ports, job.id)
    assert job.id not in store.jobs and not any(job.id in k for k in frames.written)  # type: ignore[attr-defined]
