"""Event streams are pushed, shared and bounded (issue 14, item 7), through the real app on uvicorn.

Many viewers of one job cost one store read per change (counted by ``framescribe_event_feed_reads``
on ``/metrics``), not one read per viewer every half second; a change notice published by a worker
(``RedisChanges`` on the broker's Redis, as Celery workers do) or by the in-process runner reaches
every open stream; a notice that never comes only delays a viewer until the slow fallback poll.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest

from scheduler.main import create_app
from tests.integration.api_fixtures import Api, api_settings, client, running_api, serve
from worker.adapters.queue.changes import RedisChanges
from worker.core.models import Description, FrameRef, SegmentPlan, VideoInfo

pytestmark = pytest.mark.security


class Stream:
    """One SSE viewer on its own thread: (event, data) pairs as they arrive."""

    def __init__(self, base: str, job_id: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.status: int | None = None
        self.error: Exception | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(base, job_id), daemon=True)
        self._thread.start()

    def _run(self, base: str, job_id: str) -> None:
        try:
            self._read(base, job_id)
        except httpx.HTTPError as exc:  # the test's server went away first: the viewer just ends
            self.error = exc

    def _read(self, base: str, job_id: str) -> None:
        name = None
        with client(base, timeout=120) as http, http.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
            self.status = resp.status_code
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name:
                    with self._lock:
                        self.events.append((name, json.loads(line[6:])))
                    if name == "end":
                        return

    def has(self, test: Callable[[str, dict[str, Any]], bool]) -> bool:
        with self._lock:
            return any(test(n, d) for n, d in self.events)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=30).text
    found = re.search(rf"^{name}(?:_total)? ([0-9.e+]+)$", text, re.M)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def seed_running(api: Api, segments: int) -> str:
    store = api.store()
    job, _ = store.create_job(str(api.media / "clip.mp4"), "clip.mp4", {})
    plans = [SegmentPlan(i, i * 1000, (i + 1) * 1000, Fraction(1), (i * 1000,)) for i in range(segments)]
    store.plan_job(job.id, VideoInfo(segments * 1000, 25.0, 25 * segments, 320, 240, "avc1", 1), plans)
    store.set_job_state(job.id, "running")
    return str(job.id)


def store_segment(api: Api, job_id: str, index: int, text: str) -> None:
    store = api.store()
    store.claim_segment(job_id, index)
    frame = FrameRef(0, index * 1000, str(api.settings.data_dir / f"{job_id}-{index}.jpg"), 320, 240, 10)
    store.save_segment(job_id, index, Description(text, {}, describer="local", model="local"), [frame])


@pytest.fixture
def slow_poll_api(tmp_path: Path, clip_12s: Path) -> Iterator[Api]:
    """Fallback poll of two minutes: anything a stream gets sooner was pushed."""
    with running_api(tmp_path, security={"event_fallback_poll_s": 120}) as api:
        shutil.copy(clip_12s, api.media / "clip.mp4")
        yield api


def test_a_worker_notice_reaches_every_viewer_with_one_read(slow_poll_api: Api) -> None:
    api = slow_poll_api
    job_id = seed_running(api, 3)
    viewers = [Stream(api.base, job_id) for _ in range(4)]
    for v in viewers:
        wait_until(lambda v=v: v.has(lambda n, d: n == "state" and d["state"] == "running"), "the first snapshot")
    assert all(v.status == 200 for v in viewers)
    assert metric(api.base, "framescribe_event_streams") == 4
    assert metric(api.base, "framescribe_event_feeds") == 1, "one feed for the job, whatever the viewers"
    before = metric(api.base, "framescribe_event_feed_reads")

    notice = RedisChanges(api.settings.broker_url)  # what a Celery worker publishes
    store_segment(api, job_id, 0, "a red car parks")
    notice("segment_done", {"job_id": job_id, "index": 0})
    for v in viewers:
        wait_until(lambda v=v: v.has(lambda n, d: n == "segment" and d["description"] == "a red car parks"), "push")
    assert metric(api.base, "framescribe_event_feed_reads") - before <= 2, "one read shared by four viewers"

    notice("segment_text", {"job_id": job_id, "text": "partial"})  # streamed text changes no row: no read
    api.store().set_job_state(job_id, "cancelled", None)
    notice("job_done", {"job_id": job_id, "state": "cancelled"})
    for v in viewers:
        wait_until(lambda v=v: v.has(lambda n, d: n == "end" and d["state"] == "cancelled"), "the end event")
        v.join(10)
    assert metric(api.base, "framescribe_event_feed_reads") - before <= 3
    wait_until(lambda: metric(api.base, "framescribe_event_feeds") == 0, "the feed to close with its viewers")


@pytest.mark.parametrize(("method", "suffix", "status", "end"), [("POST", "/cancel", 200, "cancelled"),
                                                            ("DELETE", "", 204, "deleted")])  # fmt: skip
def test_api_writes_wake_the_streams(slow_poll_api: Api, method: str, suffix: str, status: int, end: str) -> None:
    """Cancel and delete through the API wake the job's streams at once (no worker involved)."""
    job_id = seed_running(slow_poll_api, 2)
    viewer = Stream(slow_poll_api.base, job_id)
    wait_until(lambda: viewer.has(lambda n, d: n == "state"), "the first snapshot")
    with slow_poll_api.http() as http:
        assert http.request(method, f"/v1/jobs/{job_id}{suffix}").status_code == status
    wait_until(lambda: viewer.has(lambda n, d: n == "end" and d["state"] == end), "the pushed end")


def test_a_missed_notice_only_delays(tmp_path: Path, clip_12s: Path) -> None:
    with running_api(tmp_path, security={"event_fallback_poll_s": 0.5}) as api:
        shutil.copy(clip_12s, api.media / "clip.mp4")
        job_id = seed_running(api, 2)
        viewer = Stream(api.base, job_id)
        wait_until(lambda: viewer.has(lambda n, d: n == "state"), "the first snapshot")
        store_segment(api, job_id, 1, "nobody announced this")  # no notice at all
        wait_until(lambda: viewer.has(lambda n, d: n == "segment" and d["index"] == 1), "the fallback poll")


def test_inline_jobs_push_their_rows_to_every_viewer(tmp_path: Path, clip_12s: Path) -> None:
    """``framescribe scheduler --inline``: the in-process runner's on_event wakes the feed."""
    settings = api_settings(tmp_path, security={"event_fallback_poll_s": 120})
    shutil.copy(clip_12s, settings.allowed_roots[0] / "clip.mp4")
    with serve(create_app(settings, inline=True)) as base, client(base) as http:
        resp = http.post("/v1/jobs", json={"path": str(settings.allowed_roots[0] / "clip.mp4"),
                                           "segment_seconds": 3, "fps": 2})  # fmt: skip
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        viewers = [Stream(base, job_id) for _ in range(3)]
        for v in viewers:
            wait_until(lambda v=v: v.has(lambda n, d: n == "end"), "the job's end on every stream", timeout=120)
        for v in viewers:
            assert sorted(d["index"] for n, d in v.events if n == "segment") == [0, 1, 2, 3]
            assert v.events[-1] == ("end", {"job_id": job_id, "state": "done"})
        # one read per change (planned, 4 segments, done) plus the first, never one per viewer per poll
        assert metric(base, "framescribe_event_feed_reads") <= 4 + 3


def test_a_stream_outlives_the_body_timeout(tmp_path: Path, clip_12s: Path) -> None:
    """The body deadline (security.body_timeout_s) covers the request body only: an event stream left
    open longer still gets its changes, and nothing is logged as an error (it was a 408 inside the
    open stream, an ASGI exception)."""
    with running_api(tmp_path, security={"body_timeout_s": 0.3, "event_fallback_poll_s": 120}) as api:
        shutil.copy(clip_12s, api.media / "clip.mp4")
        job_id = seed_running(api, 2)
        viewer = Stream(api.base, job_id)
        wait_until(lambda: viewer.has(lambda n, d: n == "state"), "the first snapshot")
        time.sleep(1.0)  # the scenario: idle past the body deadline
        store_segment(api, job_id, 0, "still listening")
        RedisChanges(api.settings.broker_url)("segment_done", {"job_id": job_id, "index": 0})
        wait_until(lambda: viewer.has(lambda n, d: n == "segment" and d["description"] == "still listening"), "push")
