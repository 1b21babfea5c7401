"""The circuit breaker under Celery (issue 15): an outage stops the job worker-wide, `retry` resumes it.

Two real workers share the breaker through Redis: with DashScope answering 503 to everything, the job
ends with "DashScope unavailable since …; `framescribe retry JOB` resumes" after about N requests in
all (not N per worker, not max_attempts x Celery retries), and re-queuing its segments after the outage
finishes it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import dashscope
import pytest
import redis

from tests.conftest import ffmpeg_video
from tests.fakes.dashscope_server import FakeDashScope
from tests.integration.fault_fixtures import FAULT_REDIS, assert_job_clean, dashscope_env, fault_cluster, submit
from worker.adapters.describers.breaker import Breaker
from worker.adapters.describers.dashscope import breaker_scope

KEY = "sk-breaker-test"
N = 3


@pytest.fixture
def fake() -> Iterator[FakeDashScope]:
    old = dashscope.base_http_api_url
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    with FakeDashScope() as server:
        yield server
    dashscope.base_http_api_url = old


def test_an_outage_stops_the_job_worker_wide_and_retry_finishes_it(tmp_path: Path, fake: FakeDashScope) -> None:
    from worker.bootstrap import celery_enqueuer

    clip = ffmpeg_video(tmp_path / "clip6.mp4", seconds=6)  # 3 segments of 2 s
    client = redis.Redis.from_url(FAULT_REDIS)
    shared = Breaker(N, 1, breaker_scope(KEY, fake.base_http_api_url)).key  # this fake's breaker in Redis
    client.delete(f"{shared}:count", f"{shared}:since", f"{shared}:open")
    env = dashscope_env(fake, KEY, breaker_failures=N, breaker_cooldown_s=1, max_attempts=6)
    with fault_cluster(tmp_path / "cluster", env=env) as c:
        fake.outage(3600)
        job_id = submit(c, clip, describer="dashscope")
        job = c.wait(job_id, timeout=90)
        assert job.state == "partial"  # stopped before any segment was described: resumable, not failed
        assert "DashScope unavailable since" in (job.error or "") and f"framescribe retry {job_id}" in (job.error or "")
        during = len(fake.requests)
        assert during <= N + len(c.workers) - 1  # calls in flight when it opened may still fail: at most one each
        assert_job_clean(c, job_id)
        # the outage ends; `framescribe retry` re-queues the failed and cancelled segments
        fake.end_outage()
        time.sleep(1.0)  # the breaker's cooldown (then one probe goes through and closes it)
        indexes = c.store.reset_failed(job_id)
        assert indexes
        queue = celery_enqueuer(c.settings, c.settings.worker.queue)
        for index in indexes:
            queue.enqueue_segment(job_id, index)
        done = c.wait(job_id, timeout=90)
        assert done.state == "done", c.progress(job_id)
        usage = c.store.usage(job_id)
        bill = fake.billed_totals()
        assert usage["video_tokens"] == bill["video_tokens"] and usage["input_tokens"] == bill["input_tokens"]
