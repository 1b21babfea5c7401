"""The inline runner's pipelining on the in-memory fakes (tests/fakes/ports.py): calls start while the video
is still being sampled, exactly ``concurrency`` calls run at once, the decoder samples a bounded number of
segments ahead, every segment is described once, and the caps still bound the calls. No timing is asserted:
the calls are held on events and released when a condition holds (with deadlines)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.ports import FakeDescriber, FakeReader, fake_ports
from worker.config import Settings, load_settings
from worker.core.models import Description
from worker.core.ports import DescribeRequest
from worker.options import JobOptions
from worker.service import jobs
from worker.service import plan as planning
from worker.service.sources import Source

N = 12  # a 24 s synthetic video in 2 s segments
OPTS = JobOptions(fps=2, segment_seconds=2)
C = 3
DEADLINE_S = 20.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, describer={"kind": "local", "concurrency": C, "continuity": False})


class Journal:
    """What happened, in order: segments sampled, calls started and finished; with a condition to wait on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.sampled: list[int] = []  # segment start times (ms) whose frames were decoded
        self.started: list[int] = []
        self.finished: list[int] = []
        self.now = 0
        self.peak = 0
        self.sampled_when_first_started: int | None = None
        self.sampled_before_first_finished: int | None = None

    def wait_for(self, check: Any) -> bool:
        with self.cond:
            return self.cond.wait_for(check, DEADLINE_S)


class CountingReader(FakeReader):
    def __init__(self, path: str, journal: Journal) -> None:
        super().__init__(path, duration_ms=N * 2000)
        self.journal = journal

    def frames(self, targets_ms: Sequence[int]) -> Iterator[tuple[int, Any]]:
        yield from super().frames(targets_ms)
        with self.journal.cond:
            self.journal.sampled.append(targets_ms[0])
            self.journal.cond.notify_all()


class HeldDescriber(FakeDescriber):
    """Each call waits until ``release(call number)`` says it may finish."""

    def __init__(self, journal: Journal, release: Any) -> None:
        super().__init__("local")
        self.journal, self.release = journal, release

    def describe(self, request: DescribeRequest) -> Description:
        j = self.journal
        with j.cond:
            j.now += 1
            j.peak = max(j.peak, j.now)
            if j.sampled_when_first_started is None:
                j.sampled_when_first_started = len(j.sampled)
            j.started.append(request.plan.index)
            j.cond.notify_all()
            assert j.cond.wait_for(lambda: self.release(j), DEADLINE_S), "the test's condition never held"
            j.now -= 1
            if j.sampled_before_first_finished is None:
                j.sampled_before_first_finished = len(j.sampled)
            j.finished.append(request.plan.index)
            j.cond.notify_all()
        return super().describe(request)


def run(settings: Settings, release: Any, opts: JobOptions = OPTS) -> tuple[Journal, HeldDescriber, Any, str]:
    journal = Journal()
    describer = HeldDescriber(journal, release)
    ports, store, _ = fake_ports(settings, describer)
    ports.reader_for = lambda path: CountingReader(path, journal)
    job, _ = jobs.create(ports, Source("/videos/clip.mp4", "clip.mp4"), opts)
    jobs.run(ports, job.id)
    return journal, describer, store, job.id


def test_the_first_call_starts_before_the_last_segment_is_sampled(settings: Settings) -> None:
    journal, describer, store, job_id = run(settings, lambda j: True)
    assert journal.sampled_when_first_started is not None and journal.sampled_when_first_started < N
    assert sorted(describer.calls) == list(range(N))  # every segment described exactly once
    assert [r.state for r in store.segment_rows(job_id)] == ["done"] * N


def test_exactly_concurrency_calls_run_at_once_and_the_decoder_reads_ahead_a_bounded_amount(settings: Settings) -> None:
    # no call finishes before C calls are in flight and the decoder has sampled everything it may read ahead
    def release(j: Journal) -> bool:
        return j.peak >= C and len(j.sampled) >= 2 * C

    journal, describer, store, job_id = run(settings, release)
    assert journal.peak == C  # never more than C, and C reached
    # C segments in calls and C more ready for the next free slot, no further: the read-ahead is bounded
    assert journal.sampled_before_first_finished == 2 * C
    assert sorted(describer.calls) == list(range(N))
    assert [r.state for r in store.segment_rows(job_id)] == ["done"] * N


def test_a_freed_slot_starts_a_ready_segment_while_the_oldest_call_still_runs(settings: Settings) -> None:
    """Segment 0's call ends only after every other one: the other slots keep taking ready segments and the
    decoder keeps sampling (calls are settled in the order they end, not waited for oldest first)."""
    journal = Journal()

    class LastFirst(HeldDescriber):
        def describe(self, request: DescribeRequest) -> Description:
            desc = FakeDescriber.describe(self, request)
            j = self.journal
            with j.cond:
                if request.plan.index == 0:
                    assert j.cond.wait_for(lambda: len(j.finished) == N - 1, DEADLINE_S), "slots stayed idle"
                j.finished.append(request.plan.index)
                j.cond.notify_all()
            return desc

    describer = LastFirst(journal, lambda j: True)
    ports, store, _ = fake_ports(settings, describer)
    ports.reader_for = lambda path: CountingReader(path, journal)
    job, _ = jobs.create(ports, Source("/videos/clip.mp4", "clip.mp4"), OPTS)
    jobs.run(ports, job.id)
    assert journal.finished[-1] == 0 and sorted(journal.finished) == list(range(N))
    assert [r.state for r in store.segment_rows(job.id)] == ["done"] * N


def run_paid(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, release: Any, max_calls: int, on_call: Any = None
) -> tuple[Journal, HeldDescriber, Any, str, Any]:
    """A job with a paid describer (``on_call(store)`` as each call starts) under ``max_calls``."""
    monkeypatch.setattr(planning, "check_budget", lambda *a: None)  # the guard while running holds on its own
    journal = Journal()

    class Paid(HeldDescriber):
        def __init__(self) -> None:
            super().__init__(journal, release)
            self.name, self.video_tokens = "dashscope", 100

        def describe(self, request: DescribeRequest) -> Description:
            if on_call is not None:
                on_call(store)
            return super().describe(request)

    describer = Paid()
    ports, store, _ = fake_ports(settings, describer)
    ports.reader_for = lambda path: CountingReader(path, journal)
    opts = JobOptions(fps=2, segment_seconds=2, describer="dashscope", max_calls=max_calls)
    job, _ = jobs.create(ports, Source("/videos/clip.mp4", "clip.mp4"), opts)
    return journal, describer, store, job.id, jobs.run(ports, job.id)


def test_the_call_cap_holds_with_segments_sampled_ahead(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """No more calls than ``max_calls`` with segments sampled ahead: the segments get their slots (and
    reservations) in sampling order, the first to meet the cap fails with it, the rest are cancelled."""
    journal, describer, store, job_id, summary = run_paid(settings, monkeypatch, lambda j: True, max_calls=4)
    assert summary.state == "partial" and len(describer.calls) == 4 and journal.peak <= C
    states = [r.state for r in store.segment_rows(job_id)]
    assert states == ["done"] * 4 + ["failed"] + ["cancelled"] * (N - 5)


def test_segments_waiting_for_a_slot_hold_no_reservation(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reservations are taken with the call slot: while C calls run and C more segments wait sampled, at
    most C reservations are live, so a retry in flight is never refused for segments not yet sent."""
    live: list[int] = []

    def count(store: Any) -> None:
        with store.lock:
            live.append(len(store.reservations))

    release = lambda j: j.peak >= C and len(j.sampled) >= 2 * C  # noqa: E731
    journal, describer, store, _, summary = run_paid(settings, monkeypatch, release, max_calls=100, on_call=count)
    assert summary.state == "done" and sorted(describer.calls) == list(range(N))
    assert journal.sampled_before_first_finished == 2 * C  # C segments did wait, sampled, for a slot
    assert max(live) <= C, live
    assert not store.reservations  # every reservation released once its usage was stored


def test_a_cancel_drops_the_segments_waiting_for_a_slot(settings: Settings) -> None:
    """C calls run and C sampled segments wait for a slot when the job is cancelled: the waiting ones are never
    sent (no model call after the cancel beyond those already running)."""
    cancelled = threading.Event()
    journal = Journal()
    describer = HeldDescriber(journal, lambda j: cancelled.is_set())
    ports, store, _ = fake_ports(settings, describer)
    ports.reader_for = lambda path: CountingReader(path, journal)
    job, _ = jobs.create(ports, Source("/videos/clip.mp4", "clip.mp4"), OPTS)
    errors: list[BaseException] = []

    def run_job() -> None:
        try:
            jobs.run(ports, job.id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    runner = threading.Thread(target=run_job)
    runner.start()
    assert journal.wait_for(lambda: journal.peak == C and len(journal.sampled) == 2 * C)
    jobs.cancel(ports, job.id)
    with journal.cond:
        cancelled.set()
        journal.cond.notify_all()
    runner.join(DEADLINE_S)
    assert not runner.is_alive() and errors == []
    assert len(journal.started) == C and len(describer.calls) == C
    assert store.get_job(job.id).state == "cancelled"
    assert {r.state for r in store.segment_rows(job.id)} == {"cancelled"}


def test_the_next_call_sees_the_usage_a_finished_call_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Billed 6x the estimate: the first call spends the whole video-token cap. The next segment, sampled ahead
    and waiting for the slot, re-checks the cap when it is sent (the describer asks its guard) only after the
    first call's usage is stored, so it is refused and no second call is made."""
    settings = load_settings(data_dir=tmp_path, describer={"kind": "local", "concurrency": 1, "continuity": False})
    monkeypatch.setattr(planning, "check_budget", lambda *a: None)
    opts = JobOptions(fps=2, segment_seconds=2, describer="dashscope")
    est = planning.estimate(FakeReader("/videos/clip.mp4", duration_ms=N * 2000).probe(), opts, settings)
    per_segment = est.video_tokens // N

    class Billed(FakeDescriber):
        def describe(self, request: DescribeRequest) -> Description:
            if request.guard is not None:
                request.guard(per_segment)  # as the DashScope describer does before every request it sends
            return super().describe(request)

    describer = Billed("dashscope", video_tokens=6 * per_segment)
    journal = Journal()
    ports, store, _ = fake_ports(settings, describer)
    ports.reader_for = lambda path: CountingReader(path, journal)
    capped = JobOptions(fps=2, segment_seconds=2, describer="dashscope", max_video_tokens=est.video_tokens // 2)
    job, _ = jobs.create(ports, Source("/videos/clip.mp4", "clip.mp4"), capped)
    summary = jobs.run(ports, job.id)
    assert describer.calls == [0] and summary.state == "partial"
    rows = list(store.segment_rows(job.id))
    assert [r.state for r in rows] == ["done", "failed"] + ["cancelled"] * (N - 2)
    assert "video token cap" in (rows[1].error or "")


def test_search_vectors_are_computed_off_the_decoding_thread_in_batches_before_the_job_ends(settings: Settings) -> None:
    """Indexing (an embedding request with DashScope) runs on a call thread after its slot is free, not on the
    thread that decodes, ``EMBED_BATCH`` segments a request; the last segments are indexed when the calls are
    done, before the job's summary. Every segment is indexed once."""
    from worker.core.search import EMBED_BATCH

    journal = Journal()
    batches: list[tuple[list[int], str]] = []
    describer = HeldDescriber(journal, lambda j: True)
    ports, store, _ = fake_ports(settings, describer)
    ports.reader_for = lambda path: CountingReader(path, journal)

    def indexer(job_id: str, indexes: Sequence[int], background: bool) -> None:
        assert not background and store.get_job(job_id).summary is None
        batches.append((list(indexes), threading.current_thread().name))

    ports.indexer = indexer
    job, _ = jobs.create(ports, Source("/videos/clip.mp4", "clip.mp4"), OPTS)
    jobs.run(ports, job.id)
    assert sorted(i for batch, _ in batches for i in batch) == list(range(N))
    assert [len(batch) for batch, _ in batches] == [EMBED_BATCH, N - EMBED_BATCH]  # 12 segments: 10 + 2
    assert batches[0][1].startswith("describe")  # the call thread that stored the tenth segment
    assert batches[1][1] == threading.current_thread().name  # the rest once the calls are done


def test_a_segment_waiting_for_a_slot_stores_its_review_copies_before_it_gets_one(settings: Settings) -> None:
    """The review copies (a JPEG re-encode per frame) are made while the segment waits for a call slot, so a slot
    that frees goes straight to the next call; every segment's copies are stored once."""
    journal = Journal()
    copies: list[tuple[int, int]] = []  # (segment, calls finished when its copies were stored)

    class Blobs:
        def put(self, job_id: str, index: int, frames: Sequence[Any], made: Any = None) -> None:
            with journal.cond:
                copies.append((index, len(journal.finished)))
                journal.cond.notify_all()

    # no call ends until the segments waiting behind the first C calls have stored their copies
    describer = HeldDescriber(journal, lambda j: sum(1 for i, _ in copies if i >= C) >= C)
    ports, store, _ = fake_ports(settings, describer)
    ports.reader_for = lambda path: CountingReader(path, journal)
    ports.blobs = Blobs()  # type: ignore[assignment]
    job, _ = jobs.create(ports, Source("/videos/clip.mp4", "clip.mp4"), OPTS)
    jobs.run(ports, job.id)
    assert sorted(i for i, _ in copies) == list(range(N))
    assert [done for i, done in copies if C <= i < 2 * C] == [0] * C  # stored with every slot still busy
    assert [r.state for r in store.segment_rows(job.id)] == ["done"] * N
