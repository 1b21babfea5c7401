"""The CLI's ``cancel`` and ``retry``: they open the store as the read-only commands do (none is created
where none is found), build only what they use (no video library), and announce the change on the
broker's Redis as a worker does, so an open event stream sees it at once, not at its fallback poll.
``submit`` builds only what it uses too: the store and the queue (its file check needs no video library)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
import redis

from tests.integration.celery_fixtures import RedisServer
from tests.integration.test_startup_imports import ROOT, loaded, top
from worker.adapters.queue.broker_scan import list_keys
from worker.adapters.queue.changes import CHANNEL, announce
from worker.adapters.stores.sql import SqlResultStore
from worker.core.models import SegmentPlan, VideoInfo

pytestmark = pytest.mark.services
VIDEO_LIBRARIES = {"cv2", "av", "numpy", "scenedetect"}


class Notices:
    """A subscriber of the change channel: the job ids announced since it subscribed."""

    def __init__(self, url: str) -> None:
        self.pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(CHANNEL)
        assert self.pubsub.get_message(timeout=5) is None  # the subscription itself (ignored) is in place

    def wait(self, timeout: float) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.pubsub.get_message(timeout=0.1)
            if msg is not None:
                seen.append(msg["data"].decode())
                timeout = 0.2  # then only what follows at once
                deadline = time.monotonic() + timeout
        return seen


def planned_job(data: Path) -> str:
    store = SqlResultStore(f"sqlite:///{data / 'framescribe.db'}")
    job, _ = store.create_job(str(data / "v.mp4"), "v.mp4", {"fps": 1.0})
    plans = [SegmentPlan(i, i * 1000, i * 1000 + 1000, Fraction(1), (i * 1000,)) for i in range(2)]
    store.plan_job(job.id, VideoInfo(2000, 1.0, 2, 64, 64, "h264", 1000), plans)
    store.close()
    return job.id


def test_cancel_and_retry_announce_the_change_and_load_no_video_library(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    data = tmp_path / "data"
    job_id = planned_job(data)
    env = {"FRAMESCRIBE_DATA_DIR": str(data), "FRAMESCRIBE_BROKER_URL": redis_server.url}
    notices = Notices(redis_server.url)

    modules, res = loaded(["cancel", job_id], env)
    assert f"job {job_id} cancelled: 2 segment(s) stopped" in res.stdout, res.stderr
    assert notices.wait(10) == [job_id]
    assert not top(modules) & (VIDEO_LIBRARIES | {"celery", "dashscope"}), "a job without a webhook queues nothing"

    modules, res = loaded(["retry", job_id], env)
    assert f"job {job_id}: 2 segment(s) queued again" in res.stdout, res.stderr
    assert notices.wait(10) == [job_id]
    assert "celery" in top(modules) and not top(modules) & VIDEO_LIBRARIES
    broker = redis.Redis.from_url(redis_server.url)
    assert sum(broker.llen(key) for key in list_keys("framescribe")) == 1, "the job went to the queue"


def test_no_notice_without_a_redis_broker(redis_server: RedisServer) -> None:
    notices = Notices(redis_server.url)
    announce("memory://", "job-a")  # embedded: no broker, nothing to tell
    announce(redis_server.url, "job-b")
    assert notices.wait(5) == ["job-b"]


@pytest.mark.parametrize("command", ["cancel", "retry"])
def test_without_a_store_they_refuse_in_one_line_and_create_nothing(tmp_path: Path, command: str) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "FRAMESCRIBE_DATA_DIR": str(data), "FRAMESCRIBE_CONFIG": str(ROOT / "configs/default.yaml")}
    res = subprocess.run([sys.executable, "-m", "worker.cli", command, "0123abcd"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if not ln.startswith("framescribe: store: ")]
    assert len(errors) == 1 and errors[0].startswith("framescribe: error: no result store at "), res.stderr
    assert str(data / "framescribe.db") in errors[0]
    assert not data.exists(), "no data folder or store was created"


def test_submit_stores_and_queues_the_job_and_loads_no_video_library(tmp_path: Path, redis_server: RedisServer) -> None:
    data = tmp_path / "data"
    env = {"FRAMESCRIBE_DATA_DIR": str(data), "FRAMESCRIBE_BROKER_URL": redis_server.url}
    clip = ROOT / "examples" / "street.mp4"
    modules, res = loaded(["submit", str(clip), "--fps", "2", "--idempotency-key", "k1"], env)
    job_id = res.stdout.strip()
    assert res.returncode == 0 and len(job_id) == 32, res.stderr
    assert not top(modules) & VIDEO_LIBRARIES, sorted(top(modules) & VIDEO_LIBRARIES)
    job = SqlResultStore(f"sqlite:///{data / 'framescribe.db'}").get_job(job_id)
    assert (job.state, job.source, job.options["fps"]) == ("queued", str(clip), 2.0)
    broker = redis.Redis.from_url(redis_server.url)
    assert sum(broker.llen(key) for key in list_keys("framescribe")) == 1, "the job went to the queue"

    for bad, why in ((tmp_path / "missing.mp4", "no such file"), (tmp_path, "is a directory")):
        modules, res = loaded(["submit", str(bad)], {**env, "FRAMESCRIBE_DATA_DIR": str(tmp_path / "none")})
        assert f"framescribe: error: {bad}: {why}" in res.stderr, res.stderr
        assert not top(modules) & VIDEO_LIBRARIES
    assert not (tmp_path / "none").exists(), "a refused file creates no store"
