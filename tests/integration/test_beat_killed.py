"""``framescribe beat`` SIGKILLed while schedules are due, then restarted (issue 16's "beat killed").

What is promised (README "Schedules", scheduler/schedules.py): RedBeat keeps each schedule's last run in
Redis, so a restart remembers it; a run missed while beat was down fires once when beat comes back, and
the next run after that fires once, on time. Checked here on the messages beat publishes to the broker
(no worker consumes them, so every fire stays countable): a real beat process, the SQLite store, a private
redis-server; only the beat processes this test started are killed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery

from scheduler.schedules import ScheduleMirror, configure_redbeat
from tests.integration.celery_fixtures import REPO, RedisServer, wait_for, worker_env
from worker.adapters.queue.broker_scan import list_keys
from worker.adapters.stores.schedules import ScheduleStore
from worker.adapters.stores.sql import SqlResultStore
from worker.celery_app import FIRE_SCHEDULE
from worker.config import Settings, load_settings

pytestmark = pytest.mark.services


class Sent:
    """The fire_schedule messages in the queue's lists, each with the (wall-clock) time it was first seen:
    a thread looks every 20 ms while the test runs."""

    def __init__(self, url: str, queue: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.keys = list_keys(queue)
        self.seen: dict[str, tuple[str, float]] = {}  # task id -> (schedule id, seen at)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopped.wait(0.02):
            self.poll()

    def poll(self) -> None:
        with self.lock:
            for key in self.keys:
                for raw in self.client.lrange(key, 0, -1):
                    headers = json.loads(raw)["headers"]
                    if headers["task"] == FIRE_SCHEDULE and headers["id"] not in self.seen:
                        sid = headers["argsrepr"].strip("[]()',\" ")
                        self.seen[headers["id"]] = (sid, time.time())

    def of(self, schedule_id: str) -> list[float]:
        self.poll()
        return sorted(at for sid, at in self.seen.values() if sid == schedule_id)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)


class Beat:
    """One ``framescribe beat`` process of this test (its own session; DEBUG log kept)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "beat", "--max-interval", "0.5", "--loglevel", "DEBUG"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def has_lock(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"beat exited with {self.proc.returncode}: {self.log()[-2000:]}")
        return "beat: Acquired lock" in self.log()

    def sent(self, schedule_id: str) -> int:
        return self.log().count(f"Sending due task fs-schedule:{schedule_id} ")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def cron_at(times: list[datetime]) -> str:
    """A 6-field cron (seconds first) matching ``times``; its other matches lie a minute or more away."""
    return " ".join(",".join(str(v) for v in sorted({getattr(t, a) for t in times}))
                    for a in ("second", "minute", "hour", "day", "month")) + " *"  # fmt: skip


def sleep_until(when: datetime) -> None:
    time.sleep(max(0.0, when.timestamp() - time.time()))


def mirror(settings: Settings) -> ScheduleMirror:
    """RedBeat entries in the broker's Redis, written from this process as the REST API writes them."""
    app = Celery("beat-test", set_as_current=False)
    configure_redbeat(app, settings)
    return ScheduleMirror(app)


def test_beat_killed_while_schedules_are_due_loses_and_repeats_no_run(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    queue = f"fs-beat-{uuid.uuid4().hex[:8]}"
    db = f"sqlite:///{tmp_path / 'fs.db'}"
    settings = load_settings(broker_url=redis_server.url, database_url=db, data_dir=tmp_path / "data",
                             worker={"queue": queue})  # fmt: skip
    env = worker_env(settings, tmp_path / "failpoints")
    schedules = ScheduleStore(SqlResultStore(db).engine)
    every = schedules.create(
        name="every second", interval_s=1.0, source_kind="url", source="https://example.com/e.mp4", options={}
    )
    with contextlib.closing(Sent(redis_server.url, queue)) as sent:
        first = Beat(env, tmp_path / "beat-1.log")
        try:
            wait_for(first.has_lock, 30, "the first beat to take the lock")  # its start put `every` in Redis
            # a cron schedule's runs: t1, t2 while the first beat runs; t3-t5 while none runs; t6 after the restart
            t1 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
            times = [t1 + timedelta(seconds=s) for s in (0, 2, 5, 6, 7, 17)]
            cron = schedules.create(
                name="cron", cron=cron_at(times), source_kind="url", source="https://example.com/c.mp4", options={}
            )
            mirror(settings).put(cron)  # as the API does on create: the entry counts from now
            wait_for(lambda: len(sent.of(cron.id)) == 2, 15, "the runs at t1 and t2")
            first.kill()  # SIGKILL: the lock is not released, nothing is saved on the way out
            killed_at = time.time()
            assert killed_at < times[2].timestamp() and first.sent(cron.id) == 2
        finally:
            first.kill()

        sleep_until(times[4] + timedelta(seconds=0.5))  # t3, t4 and t5 pass with no beat running
        assert len(sent.of(cron.id)) == 2

        second = Beat(env, tmp_path / "beat-2.log")
        try:
            wait_for(lambda: len(sent.of(cron.id)) == 3, 9, "the one catch-up run for t3-t5")
            caught_up = sent.of(cron.id)[2]
            assert caught_up < times[5].timestamp() - 1, "the catch-up came too late to tell it from t6"
            sleep_until(times[5] + timedelta(seconds=3))  # t6, then six more ticks
            cron_sent = sent.of(cron.id)
            assert len(cron_sent) == 4, "t1, t2, one catch-up for t3-t5, t6: each once"
            assert cron_sent[3] >= times[5].timestamp() - 0.1, "the run after the catch-up is t6's, on time"
            assert second.sent(cron.id) == 2

            every_sent = sent.of(every.id)
            before = [at for at in every_sent if at < killed_at]
            after = [at for at in every_sent if at > killed_at]
            assert len(before) >= 3 and after, every_sent
            assert abs(after[0] - caught_up) < 1.0, "its missed runs caught up in the same tick, once"
            for run in (before, after):
                gaps = [b - a for a, b in itertools.pairwise(run)]
                assert all(0.5 < gap < 1.8 for gap in gaps), f"a 1 s schedule's run sent twice or lost: {gaps}"
        finally:
            second.kill()
