"""Reservations under a job's caps in the SQL store (worker/adapters/stores/reservations.py), on SQLite
and PostgreSQL: what counts, and that processes racing for the last headroom never pass the cap."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from fractions import Fraction
from typing import Any

from worker.adapters.stores.sql import SqlResultStore
from worker.core.models import Description, JobSummary, SegmentPlan, Usage, VideoInfo

INFO = VideoInfo(30_000, 25.0, 750, 640, 360, "avc1", 1234)


def _job(store: SqlResultStore, segments: int) -> str:
    job, _ = store.create_job("/v.mp4", "v.mp4", {})
    plans = [SegmentPlan(i, i * 1000, (i + 1) * 1000, Fraction(1), (i * 1000,)) for i in range(segments)]
    store.plan_job(job.id, INFO, plans)
    return job.id


def _reserve(
    store: SqlResultStore,
    job_id: str,
    key: str,
    index: int,
    calls: int = 1,
    tokens: int = 0,
    *,
    max_calls: int | None = None,
    max_tokens: int | None = None,
    ttl_s: float = 60,
) -> tuple[int, int] | None:
    return store.reserve_spend(
        job_id, key, index, calls, tokens, max_calls=max_calls, max_video_tokens=max_tokens, ttl_s=ttl_s
    )


def test_stored_plus_live_reservations_bound_the_caps(store: SqlResultStore) -> None:
    job = _job(store, 4)
    assert _reserve(store, job, "a", 0, 1, 100, max_calls=3, max_tokens=250) is None
    assert _reserve(store, job, "a", 0, 1, 100, max_calls=3, max_tokens=250) is None  # a retry of a
    assert _reserve(store, job, "b", 1, 1, 100, max_calls=3, max_tokens=250) == (2, 200)  # tokens: 300 > 250
    assert _reserve(store, job, "b", 1, 1, 50, max_calls=3, max_tokens=250) is None
    assert _reserve(store, job, "c", 2, 1, 0, max_calls=3) == (3, 250)  # calls: 4 > 3
    # a's usage is stored (2 requests, billed 120 video tokens): its reservation stops counting with the write
    store.claim_segment(job, 0)
    assert store.save_segment(job, 0, Description("x", usage=Usage(video_tokens=120, http_attempts=2)), [])
    assert _reserve(store, job, "b", 1, 0, 0, max_calls=3, max_tokens=250) is None  # 120 + 50 + 0
    assert _reserve(store, job, "c", 2, 1, 100, max_calls=3, max_tokens=250) == (3, 170)
    store.release_spend("a")
    store.release_spend("b")  # b sent nothing after all (its segment is still pending): forgotten
    assert _reserve(store, job, "c", 2, 1, 100, max_calls=3, max_tokens=250) is None  # 2 + 1, 120 + 100


def test_an_expired_reservation_counts_only_for_its_holder(store: SqlResultStore) -> None:
    job = _job(store, 2)
    assert _reserve(store, job, "dead", 0, max_calls=1, ttl_s=0.05) is None
    time.sleep(0.1)  # its worker died: the reservation lapses
    assert _reserve(store, job, "live", 1, max_calls=1) is None
    assert _reserve(store, job, "dead", 0, 0, max_calls=1) == (2, 0)  # its own holder still counts it
    assert _reserve(store, job, "other", 1, max_calls=2) is None  # the lapsed one counts for nobody else


def _racer(url: str, job_id: str, first: int, start: Any, out: Any) -> None:
    store = SqlResultStore(url, auto_migrate=False)
    start.wait()
    won = 0
    for i in range(first, first + 10):
        if _reserve(store, job_id, uuid.uuid4().hex, i, 1, 7, max_calls=12, max_tokens=70) is None:
            won += 1
    out.put(won)
    store.close()


def test_processes_racing_for_the_last_headroom_never_pass_the_cap(store: SqlResultStore) -> None:
    job = _job(store, 40)
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(store.url, job, n * 10, start, out)) for n in range(4)]
    for p in procs:
        p.start()
    won = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sum(won) == 10  # the token cap (70 / 7) binds first, whatever the interleaving
    assert _reserve(store, job, "late", 39, 1, 7, max_calls=12, max_tokens=70) == (10, 70)


def test_the_stored_summary_calls_count_in_the_usage_and_under_the_caps(store: SqlResultStore) -> None:
    """A model summary's requests (stored in the job's summary) count like the segments': in ``usage`` and
    against ``max_calls`` (a retried job's segments then get only what is left)."""
    job = _job(store, 1)
    store.claim_segment(job, 0)
    assert store.save_segment(job, 0, Description("x", usage=Usage(http_attempts=1)), [])
    usage = {"model": "qwen-plus", "calls": 1, "input_tokens": 40, "output_tokens": 9, "http_attempts": 2}
    summary = JobSummary("t", "done", 1, 1, 0, 1000, 40, 9, 0, 1, 0, summary_usage=usage)
    assert store.claim_summary(job) and store.finish_job(job, summary, "done")
    got = store.usage(job)
    assert (got["http_attempts"], got["summary_calls"], got["summary_input_tokens"]) == (3, 1, 40)
    assert _reserve(store, job, "r", 0, 1, 0, max_calls=3) == (3, 0)  # 1 + 2 made: a fourth passes the cap
    assert _reserve(store, job, "r", 0, 1, 0, max_calls=4) is None
