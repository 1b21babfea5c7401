"""Streams as a resource: ``/v1/streams`` on the real service, run by real Celery workers on a ``streams``
queue; the worker owning a stream is killed and another takes it over through the Redis lease, with no
duplicate segment and the takeover recorded as a gap."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.api_fixtures import client, serve
from tests.integration.celery_fixtures import BROKER_DB, SHARED_REDIS, Worker, _clear_queue, worker_env
from tests.integration.live_fixtures import assert_timeline, stored, wait_until
from tests.live_servers import RtspServer, make_clip, needs_rtsp
from worker.config import Settings, load_settings

pytestmark = [needs_rtsp, pytest.mark.services]


@dataclass
class StreamStarts:
    """An enqueuer for tests without workers: records the streams the API starts."""

    started: list[str] = field(default_factory=list)

    def start_stream(self, stream_id: str) -> None:
        self.started.append(stream_id)

    def enqueue_job(self, job_id: str) -> None:
        raise AssertionError("no jobs here")

    def broker_ok(self) -> bool:
        return True

    def workers(self, timeout_s: float = 1.0) -> int:
        return 1

    def queue_depth(self) -> int | None:
        return 0

    def close(self) -> None:
        return None


def settings_for(tmp: Path, **live: object) -> Settings:
    return load_settings(
        data_dir=tmp / "data",
        database_url=f"sqlite:///{tmp / 'streams.db'}",
        broker_url=f"{SHARED_REDIS}/{BROKER_DB}",
        describer={"kind": "local"},
        worker={"queue": f"fs-live-{uuid.uuid4().hex[:8]}", "task_time_limit_s": 300, "retry_max_delay_s": 1,
                "visibility_timeout_s": 400},
        live={"allow_cameras": ["127.0.0.1"], "queue": f"fs-streams-{uuid.uuid4().hex[:8]}", "lease_ttl_s": 3,
              "read_timeout_s": 2, "backoff_initial_s": 0.3, "backoff_max_s": 2, **live},
    )  # fmt: skip


def test_streams_api_validates_creates_pauses_resumes_and_deletes(tmp_path: Path) -> None:
    from scheduler.main import create_app

    settings = settings_for(tmp_path)
    starts = StreamStarts()
    body = {
        "name": "gate",
        "url": "rtsp://127.0.0.1:8554/cam",
        "options": {"segment_seconds": 5, "alert": ["threat_level>=2"]},
    }
    with serve(create_app(settings, enqueuer=starts, mirror=None)) as base, client(base) as http:  # type: ignore[arg-type]
        assert http.post("/v1/streams", json={**body, "url": "rtsp://10.1.2.3/cam"}).status_code == 422
        assert http.post("/v1/streams", json={**body, "url": "file:///etc/passwd"}).status_code == 422
        assert http.post("/v1/streams", json={**body, "name": "../x"}).status_code == 422
        bad_rule = {**body, "options": {"alert": ["threat_level>"]}}
        assert http.post("/v1/streams", json=bad_rule).status_code == 422
        created = http.post("/v1/streams", json={**body, "url": "rtsp://user:pw@127.0.0.1:8554/cam"})
        assert created.status_code == 201, created.text
        stream = created.json()
        assert stream["status"] == "idle" and "pw" not in stream["url"] and starts.started == [stream["id"]]
        assert http.post("/v1/streams", json=body).status_code == 409
        assert [s["name"] for s in http.get("/v1/streams").json()["items"]] == ["gate"]
        assert http.post("/v1/streams/gate/pause").json()["desired"] == "paused"
        assert http.post("/v1/streams/gate/resume").json()["desired"] == "active"
        assert len(starts.started) == 2
        assert http.get("/v1/streams/gate").json()["gaps"] == []
        assert http.delete("/v1/streams/gate").status_code == 204
        assert http.get("/v1/streams/gate").status_code == 404
        assert http.get("/v1/streams").json()["items"] == []


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


@pytest.fixture
def rtsp(tmp_path: Path) -> Iterator[RtspServer]:
    server = RtspServer(make_clip(tmp_path / "clip.mp4"), tmp_path / "rtsp.log")
    server.start()
    yield server
    server.stop()


@pytest.mark.slow  # ~45 s: two workers, a lease expiry and a takeover
def test_a_killed_owner_is_taken_over_without_duplicates(rtsp: RtspServer, tmp_path: Path) -> None:
    from scheduler.main import create_app
    from worker.celery_app import make_app

    settings = settings_for(tmp_path)
    failpoints = tmp_path / "failpoints"
    failpoints.mkdir()
    env = worker_env(
        settings, failpoints,
        FRAMESCRIBE_LIVE__QUEUE=settings.live.queue, FRAMESCRIBE_LIVE__LEASE_TTL_S="3",
        FRAMESCRIBE_LIVE__ALLOW_CAMERAS=json.dumps(["127.0.0.1"]), FRAMESCRIBE_LIVE__READ_TIMEOUT_S="2",
        FRAMESCRIBE_WORKER__TASK_TIME_LIMIT_S="300", FRAMESCRIBE_WORKER__VISIBILITY_TIMEOUT_S="400",
    )  # fmt: skip
    workers = [
        Worker(f"s{i}-{settings.live.queue}", env, tmp_path / f"w{i}.log", settings.live.queue) for i in range(2)
    ]
    from worker.adapters.stores.sql import SqlResultStore

    SqlResultStore(settings.resolved_database_url).close()  # migrated before the workers start
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.wait_ready()
        producer = make_app(settings)

        class Starter(StreamStarts):
            def start_stream(self, stream_id: str) -> None:
                from worker.live.tasks import send_run

                send_run(settings, stream_id, producer)

        with serve(create_app(settings, enqueuer=Starter(), mirror=None)) as base, client(base) as http:  # type: ignore[arg-type]
            opts = {"segment_seconds": 2, "fps": 2}
            assert http.post("/v1/streams", json={"name": "yard", "url": rtsp.url, "options": opts}).status_code == 201
            first = wait_until(
                lambda: (s := http.get("/v1/streams/yard").json())["segments"] >= 2 and s, 60, "segments"
            )
            assert first["status"] == "live"
            owner_pid = int(first["owner"].split(":")[1])
            victim = next(w for w in workers if w.proc is not None and _parent(owner_pid) == w.proc.pid)
            assert victim.proc is not None
            os.killpg(victim.proc.pid, signal.SIGKILL)  # the owner dies without releasing its lease
            killed_at = first["segments"]
            taken = wait_until(
                lambda: (s := http.get("/v1/streams/yard").json())["owner"] != first["owner"]
                and s["segments"] >= killed_at + 3 and s,
                60, "another worker to take the stream over",
            )  # fmt: skip
            assert taken["status"] == "live" and taken["gaps"], taken
            assert http.post("/v1/streams/yard/pause").status_code == 200
            wait_until(lambda: http.get("/v1/streams/yard").json()["status"] == "stopped", 30, "the stream to stop")
            job_id = taken["job_id"]
        segments, gaps, rows = stored(settings, job_id)
        assert len(segments) == len(rows) == len({s.utc_start_ms for s in segments})
        assert_timeline(segments, gaps)
        assert any(g.reason == "watcher restarted" for g in gaps)
    finally:
        for w in workers:
            w.stop()
        _clear_queue(settings.broker_url, settings.live.queue)
