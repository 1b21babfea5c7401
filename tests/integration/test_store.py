"""The SQL store on SQLite (and PostgreSQL when FRAMESCRIBE_TEST_PG_URL or the local server answers)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from worker.adapters.stores.sql import SqlResultStore
from worker.core.models import Description, FrameRef, SegmentPlan, Usage, VideoInfo
from worker.core.summary import build_summary
from worker.errors import NotFound

INFO = VideoInfo(30_000, 25.0, 750, 640, 360, "avc1", 1234)


def _plans(n: int = 3) -> list[SegmentPlan]:
    return [
        SegmentPlan(i, i * 10_000, (i + 1) * 10_000, Fraction(1), tuple(range(i * 10_000, (i + 1) * 10_000, 1000)))
        for i in range(n)
    ]


def _desc(text: str) -> Description:
    return Description(text, {"k": 1}, "dashscope", "qwen-vl-max", Usage(100, 20, 80, "req-1", 50, 1))


def _frames(i: int) -> list[FrameRef]:
    return [FrameRef(n, i * 10_000 + n * 1000, f"/f/{i}/{n}.jpg", 640, 352, 999) for n in range(10)]


def test_job_lifecycle(store: SqlResultStore) -> None:
    job, created = store.create_job("/v/a.mp4", "a.mp4", {"fps": 1})
    assert created and store.get_job(job.id).state == "queued"
    store.plan_job(job.id, INFO, _plans())
    store.plan_job(job.id, INFO, _plans())  # idempotent
    assert store.get_job(job.id).segment_count == 3
    assert store.counts(job.id) == {"pending": 3}
    for i in range(3):
        assert store.claim_segment(job.id, i)
    assert not store.claim_summary(job.id), "no summary while segments are active"
    assert store.save_segment(job.id, 0, _desc("first"), _frames(0))
    assert not store.save_segment(job.id, 0, _desc("second"), _frames(0)), "first writer wins"
    assert store.segment(job.id, 0).description == "first"
    assert len(store.frames(job.id, 0)) == 10
    assert store.save_segment(job.id, 1, _desc("b"), _frames(1))
    assert store.fail_segment(job.id, 2, "decode error at 25.00s")
    assert not store.save_segment(job.id, 2, _desc("late"), _frames(2)), "a late copy never overwrites a failed row"
    assert not store.claim_segment(job.id, 0), "a done segment is not claimed again"
    assert store.claim_summary(job.id)
    assert not store.claim_summary(job.id), "the summary is claimed exactly once"
    summary = build_summary(store.segment_rows(job.id), 30_000)
    store.finish_job(job.id, summary, summary.state)
    got = store.get_job(job.id)
    assert got.state == "partial" and got.summary and got.summary["segments_done"] == 2
    assert store.usage(job.id)["video_tokens"] == 160


def test_idempotency_key_returns_first_job(store: SqlResultStore) -> None:
    a, created_a = store.create_job("/v/a.mp4", "a.mp4", {}, idempotency_key="k1")
    b, created_b = store.create_job("/v/b.mp4", "b.mp4", {}, idempotency_key="k1")
    assert created_a and not created_b and a.id == b.id


def test_cancel_retry_delete(store: SqlResultStore) -> None:
    job, _ = store.create_job("/v/a.mp4", "a.mp4", {})
    store.plan_job(job.id, INFO, _plans())
    store.claim_segment(job.id, 0)
    store.save_segment(job.id, 0, _desc("kept"), _frames(0))
    assert store.cancel_job(job.id) == 2
    assert store.get_job(job.id).state == "cancelled"
    assert store.counts(job.id) == {"done": 1, "cancelled": 2}
    assert store.reset_failed(job.id) == [1, 2]
    assert store.counts(job.id) == {"done": 1, "pending": 2}
    # a stale task that saw the cancel must not cancel the segments a retry has just re-opened
    assert store.cancel_remaining(job.id, "the job was cancelled", only_if_cancelled=True) == 0
    assert store.counts(job.id) == {"done": 1, "pending": 2}
    store.delete_job(job.id)
    with pytest.raises(NotFound):
        store.get_job(job.id)


def test_list_jobs_pagination(store: SqlResultStore) -> None:
    ids = [store.create_job(f"/v/{i}.mp4", f"{i}.mp4", {})[0].id for i in range(5)]
    page1 = store.list_jobs(limit=2)
    page2 = store.list_jobs(limit=2, before=page1[-1].id)
    page3 = store.list_jobs(limit=2, before=page2[-1].id)
    seen = [j.id for j in page1 + page2 + page3]
    assert sorted(seen) == sorted(ids) and len(set(seen)) == 5


def test_segment_rows_stream_in_batches(store: SqlResultStore) -> None:
    job, _ = store.create_job("/v/a.mp4", "a.mp4", {})
    store.plan_job(job.id, INFO, _plans(7))
    assert [r.index for r in store.segment_rows(job.id, batch=3)] == list(range(7))


# -- leases and the webhook outbox (issue 16) -----------------------------------------------------
def test_summary_lease_is_taken_over_when_it_expires_and_only_its_holder_stores(store: SqlResultStore) -> None:
    job, _ = store.create_job("/v/a.mp4", "a.mp4", {}, webhook_url="https://example.com/hook")
    store.plan_job(job.id, INFO, _plans(1))
    assert store.claim_segment(job.id, 0) and store.save_segment(job.id, 0, _desc("a"), _frames(0))
    assert store.claim_summary(job.id, "dead", lease_s=0.2)
    assert not store.claim_summary(job.id, "other", lease_s=30), "held while the lease runs"
    import time

    time.sleep(0.3)
    assert store.claim_summary(job.id, "other", lease_s=30), "an expired lease is taken over"
    assert not store.renew_summary(job.id, "dead", 30), "the dead holder lost it"
    summary = build_summary(store.segment_rows(job.id), 30_000)
    assert not store.finish_job(job.id, summary, summary.state, owner="dead"), "a late old holder writes nothing"
    assert store.outbox(job.id) == []
    assert store.finish_job(job.id, summary, summary.state, owner="other")
    assert store.get_job(job.id).summary is not None
    [(delivery_id, state, attempts)] = store.outbox(job.id)  # written with the summary
    assert state == "pending" and attempts == 0
    assert not store.claim_summary(job.id, "third", lease_s=30), "done: never claimed again"
    assert store.claim_webhook(job.id, hold_s=60) == (delivery_id, 1)
    assert store.claim_webhook(job.id, hold_s=60) is None, "one sender per attempt"
    store.webhook_done(delivery_id, "sent")
    assert store.outbox(job.id) == [(delivery_id, "sent", 1)]


def test_orphans_are_expired_leases_and_unplanned_or_unfinished_jobs(store: SqlResultStore) -> None:
    job, _ = store.create_job("/v/a.mp4", "a.mp4", {})
    store.plan_job(job.id, INFO, _plans(2))
    assert store.claim_segment(job.id, 0) and store.claim_segment(job.id, 1)
    assert store.renew_segment_lease(job.id, 0, "alive", 60)
    assert store.renew_segment_lease(job.id, 1, "dead", -1)  # already expired
    found = store.orphans(lease_s=20, grace_s=15)
    assert [(o.kind, o.index) for o in found if o.job_id == job.id] == [("segment", 1)]
    assert store.claim_segment(job.id, 1), "a re-queued claim starts a fresh lease"
    assert not [o for o in store.orphans(lease_s=20, grace_s=15) if o.job_id == job.id]
    assert store.fail_segment(job.id, 0, "x") and store.fail_segment(job.id, 1, "y")
    assert [o.kind for o in store.orphans(lease_s=20, grace_s=15) if o.job_id == job.id] == ["finish"]


def test_each_segment_write_changes_only_its_own_row_in_the_states_it_accepts(store: SqlResultStore) -> None:
    """claim: pending/running/failed; save and fail: pending/running; lease: running; add_spent: any.
    Segment 1 of the job (and the same index of another job) is never touched."""
    job, _ = store.create_job("/v/a.mp4", "a.mp4", {})
    other, _ = store.create_job("/v/b.mp4", "b.mp4", {})
    store.plan_job(job.id, INFO, _plans(2))
    store.plan_job(other.id, INFO, _plans(1))
    assert not store.renew_segment_lease(job.id, 0, "w", 60), "a pending row has no lease"
    assert store.fail_segment(job.id, 0, "x", Usage(5, 1, 7, http_attempts=2)), "a pending row can fail"
    assert not store.fail_segment(job.id, 0, "again"), "failed once: not failed again"
    assert not store.renew_segment_lease(job.id, 0, "w", 60)
    assert store.claim_segment(job.id, 0), "a failed row is claimed again"
    assert store.renew_segment_lease(job.id, 0, "w", 60)
    assert store.save_segment(job.id, 0, _desc("ok"), _frames(0))
    for write in (lambda: store.claim_segment(job.id, 0), lambda: store.fail_segment(job.id, 0, "late"),
                  lambda: store.renew_segment_lease(job.id, 0, "w", 60)):  # fmt: skip
        assert not write(), "a done row stays as it is"
    store.add_spent(job.id, 0, Usage(1, 1, 1, http_attempts=1))  # whatever its state
    row = store.segment(job.id, 0)
    assert (row.state, row.attempts, row.error, row.description) == ("done", 1, None, "ok")
    # the failed attempt's usage, the saved call's (100/20/80) and the added spend
    assert (row.input_tokens, row.output_tokens, row.video_tokens, row.http_attempts) == (106, 22, 88, 3)
    for untouched in (store.segment(job.id, 1), store.segment(other.id, 0)):
        assert (untouched.state, untouched.attempts, untouched.input_tokens) == ("pending", 0, 0)
