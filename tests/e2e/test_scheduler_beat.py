"""Schedules end to end: the API writes RedBeat entries, real ``framescribe beat`` processes fire them,
a real worker runs ``framescribe.fire_schedule`` and the jobs it makes.

Module-wide: one worker (``-c 1``) on a unique queue in Redis DB 5, SQLite store, the API on uvicorn.
Beat processes are started per test (``--max-interval 0.5``: the lock lives 2.5 s) and stopped after.
The watched folder gets tiny generated clips whose mtime is set in the past (nothing to settle).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scheduler.main import create_app
from tests.integration.api_fixtures import API_REDIS, BEAT_DB, client, serve
from tests.integration.celery_fixtures import REPO, Cluster, cluster, wait_for
from tests.media import tiny_video
from worker.adapters.stores.schedules import ScheduleStore

pytestmark = pytest.mark.services


@dataclass
class Service:
    cluster: Cluster
    base: str
    media: Path
    tmp: Path

    def folder(self, name: str) -> Path:
        path = self.media / name
        path.mkdir()
        return path

    def schedules(self) -> ScheduleStore:
        return ScheduleStore(self.cluster.store.engine)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("beat-e2e")
    media = tmp / "media"
    media.mkdir()
    env = {"FRAMESCRIBE_ALLOWED_ROOTS": json.dumps([str(media)])}
    with cluster(tmp, f"sqlite:///{tmp / 'fs.db'}", broker_url=f"{API_REDIS}/{BEAT_DB}", workers=1, **env) as c:
        settings = c.settings.model_copy(update={"allowed_roots": [media]})
        with serve(create_app(settings, beat_interval_s=0.5)) as base:
            yield Service(c, base, media, tmp)


class Beat:
    """One ``framescribe beat`` subprocess (DEBUG log kept for assertions)."""

    def __init__(self, service: Service, name: str) -> None:
        self.log_path = service.tmp / f"beat-{name}-{time.monotonic_ns()}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from worker.cli import main; main()",
                 "beat", "--max-interval", "0.5", "--loglevel", "DEBUG"],
                cwd=REPO, env=service.cluster.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def sent(self, schedule_id: str) -> int:
        """How often this beat sent the schedule's task."""
        return len(re.findall(rf"Sending due task fs-schedule:{schedule_id}\b", self.log()))

    def ticks(self) -> int:
        return self.log().count("beat: Extending lock")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"beat exited with {self.proc.returncode}: {self.log()[-2000:]}")
        return True

    def has_lock(self) -> bool:
        return "beat: Acquired lock" in self.log()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@contextmanager
def beats(service: Service, n: int) -> Iterator[list[Beat]]:
    started = [Beat(service, f"b{i}") for i in range(n)]
    try:
        yield started
    finally:
        for b in started:
            b.stop()


def drop_clip(folder: Path, name: str) -> Path:
    """A 1 s clip whose mtime lies a minute in the past (so it is settled at once)."""
    path = tiny_video(folder / name, seconds=1.0, fps=10.0)
    old = time.time() - 60
    os.utime(path, (old, old))
    return path


def create_schedule(service: Service, **body: Any) -> dict[str, Any]:
    with client(service.base) as http:
        resp = http.post("/v1/schedules", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def jobs_of(service: Service, schedule_id: str) -> list[dict[str, Any]]:
    with client(service.base) as http:
        return list(http.get("/v1/jobs", params={"schedule_id": schedule_id, "limit": 200}).json()["items"])


def test_two_beats_fire_a_cron_schedule_one_job_per_new_file_and_fail_over(service: Service) -> None:
    inbox = service.folder("inbox")
    drop_clip(inbox, "a.mp4")
    drop_clip(inbox, "b.mp4")
    (inbox / "notes.txt").write_text("not matched by the glob")
    sched = create_schedule(
        service, name="inbox", cron="*/2 * * * * *", source={"folder": str(inbox), "glob": "*.mp4", "settle_s": 0},
        options={"segment_seconds": 1, "fps": 4},
    )  # fmt: skip
    sid = sched["id"]
    store = service.schedules()
    with beats(service, 2) as (b0, b1):
        wait_for(
            lambda: b0.alive() and b1.alive() and len(jobs_of(service, sid)) == 2, 60, "a job for each of the two files"
        )
        drop_clip(inbox, "c.mp4")
        wait_for(lambda: len(jobs_of(service, sid)) == 3, 60, "a job for the new file")
        runs = store.get(sid).run_count
        wait_for(lambda: store.get(sid).run_count >= runs + 3, 60, "three more runs over unchanged files")

        jobs = jobs_of(service, sid)
        assert sorted(j["source_name"] for j in jobs) == ["a.mp4", "b.mp4", "c.mp4"]
        assert store.seen_count(sid) == 3
        active, standby = (b0, b1) if b0.has_lock() else (b1, b0)
        assert active.has_lock() and not standby.has_lock()
        assert active.sent(sid) >= 5 and standby.sent(sid) == 0  # the waiting beat never fires

        active.stop()  # the standby takes the lock over and keeps the schedule going
        wait_for(standby.has_lock, 30, "the standby beat to take the lock")
        drop_clip(inbox, "d.mp4")
        wait_for(lambda: len(jobs_of(service, sid)) == 4, 60, "a job for the file dropped after fail-over")
    with client(service.base) as http:
        shown = http.get(f"/v1/schedules/{sid}").json()
    assert shown["jobs_created"] == 4 and shown["last_run_at"] is not None and shown["next_run_at"] is not None
    assert sorted(j["source_name"] for j in shown["recent_jobs"]) == ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    wait_for(lambda: all(service.cluster.store.get_job(j["id"]).summary for j in jobs_of(service, sid)), 90,
             "the schedule's jobs to finish")  # fmt: skip
    assert {service.cluster.store.get_job(j["id"]).state for j in jobs_of(service, sid)} == {"done"}


def _cron_at(times: list[datetime]) -> str:
    """A 6-field cron (seconds first) matching ``times`` (and otherwise only far from now)."""

    def field(values: set[int]) -> str:
        return ",".join(str(v) for v in sorted(values))

    return " ".join(field({getattr(t, a) for t in times}) for a in ("second", "minute", "hour", "day", "month")) + " *"


def test_runs_missed_while_beat_was_down_fire_once(service: Service) -> None:
    folder = service.folder("missed")
    drop_clip(folder, "x.mp4")
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    times = [start + timedelta(seconds=i) for i in range(3)]  # three runs while no beat is running
    sched = create_schedule(
        service, name="missed", cron=_cron_at(times), timezone="UTC",
        source={"folder": str(folder), "glob": "*.mp4", "settle_s": 0},
    )  # fmt: skip
    sid = sched["id"]
    store = service.schedules()
    wait_for(lambda: datetime.now(UTC) > times[-1] + timedelta(seconds=1), 10, "the three runs to pass")
    assert store.get(sid).run_count == 0
    with beats(service, 1) as (beat,):
        wait_for(lambda: beat.alive() and store.get(sid).run_count == 1, 30, "the catch-up run")
        ticks = beat.ticks()
        wait_for(lambda: beat.ticks() >= ticks + 6, 30, "six more beat ticks")
        assert store.get(sid).run_count == 1
        assert beat.sent(sid) == 1
    assert [j["source_name"] for j in jobs_of(service, sid)] == ["x.mp4"]
