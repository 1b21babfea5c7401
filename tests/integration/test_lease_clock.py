"""Leases, holds and reservations on the database's clock (issue 16's leftover), on SQLite and PostgreSQL.

A worker whose clock is an hour ahead must not take over a live lease (segment, summary, outbox hold)
nor ignore a live spend reservation; one an hour behind must still take over an expired one once the
database's time has passed it. The worker's clock is skewed in process: ``time.time`` and every store
module's ``now``. On PostgreSQL a second test skews a real worker process with libfaketime."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from tests.integration.fault_fixtures import faketime_env
from tests.integration.store_fixtures import pg_database
from worker.adapters.stores import engine
from worker.adapters.stores.sql import SqlResultStore
from worker.core.models import Description, SegmentPlan, VideoInfo
from worker.core.summary import build_summary

INFO = VideoInfo(3_000, 25.0, 75, 640, 360, "avc1", 1234)
HOUR = 3600.0


class Skew:
    """The worker's wall clock, ``offset`` seconds off the real one."""

    def __init__(self) -> None:
        self.offset = 0.0


@pytest.fixture
def skew(monkeypatch: pytest.MonkeyPatch) -> Iterator[Skew]:
    clock, real_time, real_now = Skew(), time.time, engine.now
    monkeypatch.setattr(time, "time", lambda: real_time() + clock.offset)
    for name, mod in list(sys.modules.items()):
        if name.startswith("worker.") and getattr(mod, "now", None) is real_now:
            monkeypatch.setattr(mod, "now", lambda: real_now() + timedelta(seconds=clock.offset))
    yield clock


def _job(store: SqlResultStore, segments: int = 1, hook: str | None = None) -> str:
    job, _ = store.create_job("/v.mp4", "v.mp4", {}, webhook_url=hook)
    plans = [SegmentPlan(i, i * 1000, (i + 1) * 1000, Fraction(1), (i * 1000,)) for i in range(segments)]
    store.plan_job(job.id, INFO, plans)
    return job.id


def _running(store: SqlResultStore, job: str) -> set[int]:
    return {o.index for o in store.orphans(lease_s=20, grace_s=15) if o.kind == "segment" and o.job_id == job}


def test_the_skew_reaches_the_python_clocks(skew: Skew) -> None:
    skew.offset = HOUR
    assert abs(engine.now() - datetime.now(UTC) - timedelta(hours=1)) < timedelta(seconds=5)
    assert abs(time.time() - datetime.now(UTC).timestamp() - HOUR) < 5


@pytest.mark.parametrize("ahead", [HOUR, -HOUR])
def test_segment_lease_follows_the_database_clock(store: SqlResultStore, skew: Skew, ahead: float) -> None:
    job = _job(store, 2)
    assert store.claim_segment(job, 0) and store.claim_segment(job, 1)
    assert store.renew_segment_lease(job, 0, "holder", 30) and store.renew_segment_lease(job, 1, "dying", 1.0)
    skew.offset = ahead
    assert _running(store, job) == set(), "a live lease is nobody's orphan, whatever the sweeper's clock"
    time.sleep(1.3)
    assert _running(store, job) == {1}, "the expired one is, once the database's time passed it"
    assert store.renew_segment_lease(job, 0, "holder", 30)  # renewed by the skewed worker: still 30 s
    skew.offset = 0.0
    assert 0 not in _running(store, job)


@pytest.mark.parametrize("ahead", [HOUR, -HOUR])
def test_summary_lease_follows_the_database_clock(store: SqlResultStore, skew: Skew, ahead: float) -> None:
    job = _job(store)
    assert store.claim_segment(job, 0) and store.save_segment(job, 0, Description("a"), [])
    skew.offset = ahead
    assert store.claim_summary(job, "holder", lease_s=1.0)
    skew.offset = -ahead
    assert not store.claim_summary(job, "skewed", lease_s=30), "held while the database says it runs"
    time.sleep(1.3)
    assert store.claim_summary(job, "skewed", lease_s=30), "taken over once expired on the database's clock"
    skew.offset = ahead
    assert not store.renew_summary(job, "holder", 30)
    summary = build_summary(store.segment_rows(job), 3_000)
    assert store.finish_job(job, summary, summary.state, owner="skewed")


@pytest.mark.parametrize("ahead", [HOUR, -HOUR])
def test_outbox_hold_follows_the_database_clock(store: SqlResultStore, skew: Skew, ahead: float) -> None:
    job = _job(store, hook="https://example.com/hook")
    assert store.claim_segment(job, 0) and store.save_segment(job, 0, Description("a"), [])
    assert store.claim_summary(job, "f", lease_s=30)
    summary = build_summary(store.segment_rows(job), 3_000)
    skew.offset = ahead
    assert store.finish_job(job, summary, summary.state, owner="f")
    skew.offset = -ahead
    [(delivery, _, _)] = store.outbox(job)
    assert store.claim_webhook(job, hold_s=1.0) == (delivery, 1), "due at once, whoever wrote it"
    skew.offset = ahead
    assert store.claim_webhook(job, hold_s=30) is None, "held"
    time.sleep(1.3)
    assert store.claim_webhook(job, hold_s=30) == (delivery, 2), "the hold lapsed on the database's clock"
    store.webhook_done(delivery, "pending", "503", retry_in_s=1.0)
    skew.offset = -ahead
    assert store.claim_webhook(job, hold_s=30) is None, "the retry is not due yet"
    assert [o for o in store.orphans(20, 15) if o.kind == "webhook"] == []
    time.sleep(1.3)
    assert [o.job_id for o in store.orphans(20, 15) if o.kind == "webhook"] == [job]
    assert store.claim_webhook(job, hold_s=30) == (delivery, 3)


@pytest.mark.parametrize("ahead", [HOUR, -HOUR])
def test_reservation_expiry_follows_the_database_clock(store: SqlResultStore, skew: Skew, ahead: float) -> None:
    job = _job(store, 2)
    assert store.claim_segment(job, 0) and store.claim_segment(job, 1)

    def reserve(key: str, index: int) -> tuple[int, int] | None:
        return store.reserve_spend(job, key, index, 1, 0, max_calls=1, max_video_tokens=None, ttl_s=1.0)

    skew.offset = -ahead
    assert reserve("holder", 0) is None
    skew.offset = ahead
    assert reserve("skewed", 1) == (1, 0), "the live reservation still counts"
    time.sleep(1.3)
    assert reserve("skewed", 1) is None, "the lapsed one no longer does"


# -- a real skewed process (libfaketime) against PostgreSQL's clock --------------------------------
_SKEWED = """
import json, sys, time
from worker.adapters.stores.sql import SqlResultStore
s = SqlResultStore(sys.argv[1]); job = sys.argv[2]
out = {"skew_s": round(time.time() - float(sys.argv[3]))}
out["orphans"] = sorted(o.index for o in s.orphans(20, 3600) if o.kind == "segment")  # pending: not yet
out["reserve"] = s.reserve_spend(job, "skewed", 1, 1, 0, max_calls=1, max_video_tokens=None, ttl_s=30)
print(json.dumps(out))
"""


@pytest.mark.parametrize("offset", ["+1h", "-1h"])
def test_a_skewed_worker_process_on_postgresql(tmp_path: Path, offset: str) -> None:
    with pg_database() as url:
        store = SqlResultStore(url)
        try:
            job = _job(store, 2)
            assert store.claim_segment(job, 0) and store.renew_segment_lease(job, 0, "holder", 60)
            assert store.reserve_spend(job, "h", 0, 1, 0, max_calls=1, max_video_tokens=None, ttl_s=60) is None
            env = faketime_env(tmp_path / "clock", offset)

            def skewed() -> dict[str, object]:
                cmd = [sys.executable, "-c", _SKEWED, url, job, str(time.time())]
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
                return dict(json.loads(done.stdout.strip().splitlines()[-1]))

            live = skewed()
            assert abs(abs(int(str(live["skew_s"]))) - 3600) < 60, live  # the process' clock really is off
            assert live["orphans"] == [] and live["reserve"] == [1, 0], live
            # the holder's last renewals, then it dies
            assert store.renew_segment_lease(job, 0, "holder", 0.5)
            assert store.reserve_spend(job, "h", 0, 0, 0, max_calls=1, max_video_tokens=None, ttl_s=0.5) is None
            time.sleep(1.0)
            lapsed = skewed()
            assert lapsed["orphans"] == [0] and lapsed["reserve"] is None, lapsed
        finally:
            store.close()
