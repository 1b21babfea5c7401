"""REST -> Redis -> real ``celery worker`` processes -> store, through the real app on uvicorn.

One module-wide cluster: two workers (``-c 1``) on a unique queue in Redis DB 4, SQLite store, the API
(uvicorn on 127.0.0.1, port 0) in a thread. Clip: ``clip_12s`` (12 s testsrc2) in 2 s segments at
2 fps -> 6 segments of 4 frames each, described by the local describer.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from scheduler.main import create_app
from tests.integration.api_fixtures import (
    API_DB,
    API_REDIS,
    WEBHOOK_SECRET,
    WebhookReceiver,
    client,
    error_of,
    serve,
)
from tests.integration.celery_fixtures import Cluster, cluster, wait_for
from worker.adapters.stores.schedules import ScheduleStore
from worker.celery_app import make_app
from worker.core.signing import DELIVERY_HEADER, verify

pytestmark = pytest.mark.services
OPTS = {"segment_seconds": 2, "fps": 2}
N = 6


@dataclass
class Service:
    cluster: Cluster
    base: str
    media: Path

    def http(self) -> httpx.Client:
        return client(self.base, timeout=60)

    def pause(self) -> None:
        """Workers stop taking messages from the queue (what is sent meanwhile waits in Redis)."""
        make_app(self.cluster.settings).control.cancel_consumer(
            self.cluster.queue, reply=True, timeout=5, limit=len(self.cluster.workers)
        )

    def resume(self) -> None:
        make_app(self.cluster.settings).control.add_consumer(
            self.cluster.queue, reply=True, timeout=5, limit=len(self.cluster.workers)
        )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, clip_12s: Path) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("api-e2e")
    media = tmp / "media"
    media.mkdir()
    shutil.copy(clip_12s, media / "clip.mp4")
    env = {
        "FRAMESCRIBE_ALLOWED_ROOTS": json.dumps([str(media)]),
        "FRAMESCRIBE_SCHEDULER__WEBHOOK_SECRET": WEBHOOK_SECRET,
        "FRAMESCRIBE_SCHEDULER__ALLOW_PRIVATE_URLS": '["127.0.0.1"]',
    }
    with cluster(tmp, f"sqlite:///{tmp / 'fs.db'}", broker_url=f"{API_REDIS}/{API_DB}", **env) as c:
        settings = c.settings.model_copy(
            update={
                "allowed_roots": [media],
                "scheduler": c.settings.scheduler.model_copy(
                    update={"webhook_secret": WEBHOOK_SECRET, "allow_private_urls": ["127.0.0.1"]}
                ),
            }
        )
        with serve(create_app(settings, beat_interval_s=1.0)) as base:
            yield Service(c, base, media)


def follow_events(http: httpx.Client, job_id: str, timeout: float = 90) -> list[tuple[str, dict[str, Any]]]:
    """Read the job's SSE stream to its end; returns (event, data) pairs."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = None
    with http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                events.append((name, json.loads(line[6:])))
                if name == "end":
                    break
    return events


def test_submit_follow_events_to_done_then_summary_segments_and_frames(service: Service) -> None:
    with service.http() as http:
        resp = http.post("/v1/jobs", json={"path": str(service.media / "clip.mp4"), **OPTS})
        assert resp.status_code == 202, resp.text
        job = resp.json()
        assert job["state"] == "queued" and job["links"]["events"] == f"/v1/jobs/{job['id']}/events"
        assert resp.headers["location"] == f"/v1/jobs/{job['id']}"

        events = follow_events(http, job["id"])
        names = [n for n, _ in events]
        assert names[-1] == "end" and events[-1][1]["state"] == "done"
        assert sorted(d["index"] for n, d in events if n == "segment") == list(range(N))
        assert all(d["state"] == "done" and d["description"] for n, d in events if n == "segment")
        assert [d["state"] for n, d in events if n == "state"][-1] == "done"

        got = http.get(f"/v1/jobs/{job['id']}").json()
        assert got["state"] == "done" and got["segment_count"] == N and got["progress"] == {"done": N}
        assert got["video"]["duration_ms"] == 12_000
        summary = http.get(f"/v1/jobs/{job['id']}/summary").json()
        assert summary["state"] == "done" and summary["summary"]["text"]
        segs = http.get(f"/v1/jobs/{job['id']}/segments").json()["items"]
        assert [(s["index"], s["start_ms"], s["end_ms"]) for s in segs] == [
            (i, i * 2000, i * 2000 + 2000) for i in range(N)
        ]
        assert all(s["frame_count"] == 4 and len(s["frames"]) == 4 for s in segs)
        jpeg = http.get(segs[2]["frames"][1])
        assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
        assert jpeg.content[:3] == b"\xff\xd8\xff"
        assert http.get(f"/v1/jobs/{job['id']}/frames/2/99.jpg").status_code == 404


def test_cancel_while_running_then_retry_runs_the_rest(service: Service) -> None:
    c = service.cluster
    with service.http() as http:
        service.pause()
        try:
            job_id = http.post("/v1/jobs", json={"path": str(service.media / "clip.mp4"), **OPTS}).json()["id"]
            c.arm(job_id, 0, "before_describe", "hold")
        finally:
            service.resume()
        c.wait_held(job_id, 0, "before_describe")
        cancelled = http.post(f"/v1/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        c.release(job_id, 0, "before_describe")
        wait_for(lambda: c.store.get_job(job_id).summary is not None, 60, "the cancelled job to be summarised")
        assert c.store.counts(job_id).get("cancelled", 0) >= 1
        again = http.post(f"/v1/jobs/{job_id}/cancel")
        assert again.status_code == 409 and error_of(again)["code"] == "already_ended"

        retried = http.post(f"/v1/jobs/{job_id}/retry")
        assert retried.status_code == 202, retried.text
        events = follow_events(http, job_id)
        assert events[-1] == ("end", {"job_id": job_id, "state": "done"})
        assert http.get(f"/v1/jobs/{job_id}").json()["progress"] == {"done": N}
        assert c.rows(job_id) == sorted(set(c.rows(job_id)))  # one row per segment


def test_retry_after_a_rejected_segment(service: Service) -> None:
    c = service.cluster
    with service.http() as http:
        service.pause()
        try:
            job_id = http.post("/v1/jobs", json={"path": str(service.media / "clip.mp4"), **OPTS}).json()["id"]
            c.arm(job_id, 3, "before_describe", "reject")
        finally:
            service.resume()
        events = follow_events(http, job_id)
        assert events[-1][1]["state"] == "partial"
        failed = [d for n, d in events if n == "segment" and d["state"] == "failed"]
        assert [d["index"] for d in failed] == [3] and "rejected" in failed[0]["error"]
        retried = http.post(f"/v1/jobs/{job_id}/retry")
        assert retried.status_code == 202 and retried.json()["state"] == "queued"
        assert follow_events(http, job_id)[-1][1]["state"] == "done"
        assert [r[:2] for r in c.rows(job_id)] == [(i, "done") for i in range(N)]
        nothing = http.post(f"/v1/jobs/{job_id}/retry")
        assert nothing.status_code == 409 and error_of(nothing)["code"] == "not_retryable"


def test_webhook_signed_and_retried_after_503(service: Service) -> None:
    with WebhookReceiver(fail_first=1) as hook, service.http() as http:
        body = {"path": str(service.media / "clip.mp4"), **OPTS, "webhook_url": hook.url("/hook")}
        job_id = http.post("/v1/jobs", json=body).json()["id"]
        wait_for(lambda: hook.count >= 2, 60, "the webhook to be retried and accepted")
        first, second = hook.hits[:2]
        now = int(time.time())
        for hit in (first, second):
            assert hit.method == "POST" and hit.path == "/hook"
            assert verify(WEBHOOK_SECRET, hit.headers, hit.body, now=now) is None
            assert verify("wrong-secret", hit.headers, hit.body, now=now) is not None
        assert first.headers[DELIVERY_HEADER] == second.headers[DELIVERY_HEADER]
        payload = json.loads(second.body)
        assert payload["event"] == "job.finished" and payload["job"]["id"] == job_id
        assert payload["job"]["state"] == "done" and payload["links"]["summary"] == f"/v1/jobs/{job_id}/summary"
        tampered = second.body.replace(b'"done"', b'"failed"')
        assert verify(WEBHOOK_SECRET, second.headers, tampered, now=now) == "signature does not match the body"

        store = ScheduleStore(service.cluster.store.engine)
        deliveries = wait_for(
            lambda: got if len(got := store.deliveries(job_id)) >= 2 else None, 30, "both attempts to be recorded"
        )
        assert [(d.attempt, d.status_code, d.ok) for d in deliveries] == [(1, 503, False), (2, 204, True)]
        assert hook.count == 2
