"""Real ``celery worker`` processes for the queue tests (imported by test_celery_jobs.py).

A ``Cluster`` is a result store (SQLite file or a fresh PostgreSQL database), a unique queue on the
shared Redis (DB 1) or on a private ``redis-server``, a failpoint folder (see ``worker/failpoints.py``)
and two worker subprocesses (``-c 1`` each, prefork) whose logs are kept for assertions.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from tests.integration.store_fixtures import pg_database  # noqa: F401  (re-exported for the Celery tests)
from worker.adapters.stores.schema import FrameDbRow, SegmentDbRow
from worker.adapters.stores.sql import Job, SqlResultStore
from worker.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
SHARED_REDIS = "redis://127.0.0.1:6379"
BROKER_DB = 1  # Redis DBs 1-3 belong to these tests
LIMITER_DB = 2
TERMINAL = ("done", "partial", "failed", "cancelled")
# Small limits so that recovery paths (visibility timeout, restore sweep) fit in a test.
WORKER_LIMITS = {"task_time_limit_s": 8, "retry_max_delay_s": 1, "visibility_timeout_s": 10, "max_redeliveries": 2}


def answering(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# -- servers ----------------------------------------------------------------------------------
class RedisServer:
    """A private redis-server on a free loopback port (AOF on: a restart keeps queued messages)."""

    def __init__(self, folder: Path, *, appendonly: bool = True) -> None:
        self.folder = folder
        self.port = free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
             "--dir", str(self.folder), "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        wait_for(lambda: _pings(client), 10, f"redis-server on port {self.port}")

    def stop(self) -> None:
        """Graceful SHUTDOWN (AOF flushed), as a service manager's restart does."""
        if self.proc is None:
            return
        with contextlib.suppress(redis.RedisError):
            redis.Redis(port=self.port, socket_timeout=2).shutdown(nosave=not self.appendonly)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for one test (shared: tests/integration/conftest.py, tests/e2e/conftest.py)."""
    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


# -- workers ----------------------------------------------------------------------------------
class Worker:
    """One ``celery -A worker.celery_app worker`` process (its own session, so it can be stopped whole)."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path, queue: str, concurrency: int = 1) -> None:
        self.name = name
        self.env = env
        self.log_path = log_path
        self.queue = queue
        self.concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-P", "prefork",
             "-c", str(self.concurrency), "-Q", self.queue, "-n", f"{self.name}@%h", "--loglevel=INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited: {self.log()[-3000:]}")
            return " ready." in self.log()

        wait_for(ready, timeout, f"worker {self.name} to be ready", step=0.1)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def terminate(self) -> None:
        """Ask for a warm shutdown (running tasks finish, reserved ones go back to the queue)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this fixture created
            self.proc.wait(5)


@dataclass
class Cluster:
    """A store, a queue and two real workers; helpers to submit jobs and observe them."""

    settings: Settings
    store: SqlResultStore
    env: dict[str, str]
    failpoints: Path
    workers: list[Worker] = field(default_factory=list)

    @property
    def queue(self) -> str:
        return self.settings.worker.queue

    def start(self, n: int = 2) -> None:
        for i in range(n):
            w = Worker(f"w{i}-{self.queue}", self.env, self.failpoints.parent / f"worker{i}.log", self.queue)
            w.start()
            self.workers.append(w)
        for w in self.workers:
            w.wait_ready()

    def stop(self) -> None:
        for w in self.workers:
            w.terminate()
        for w in self.workers:
            w.stop()

    def submit(self, source: str | Path, key: str | None = None, **options: Any) -> str:
        from worker.adapters.queue import CeleryEnqueuer

        opts = {"segment_seconds": 2, "fps": 2, **options}
        job, created = self.store.create_job(str(source), Path(str(source)).name, opts, idempotency_key=key)
        if created:
            CeleryEnqueuer(self.settings).enqueue_job(job.id)
        return job.id

    def arm(self, job_id: str, index: int, point: str, action: str = "kill") -> Path:
        path = self.failpoints / f"{job_id}.{index}.{point}"
        path.write_text(action, encoding="utf-8")
        return path

    def wait_held(self, job_id: str, index: int, point: str, timeout: float = 30) -> None:
        held = self.failpoints / f"{job_id}.{index}.{point}.held"
        wait_for(held.exists, timeout, f"segment {index} to reach {point}")

    def release(self, job_id: str, index: int, point: str) -> None:
        (self.failpoints / f"{job_id}.{index}.{point}.release").write_text("go", encoding="utf-8")

    def wait(self, job_id: str, timeout: float = 60, states: tuple[str, ...] = TERMINAL) -> Job:
        def finished() -> Job | None:
            job = self.store.get_job(job_id)
            return job if job.state in states and job.summary is not None else None

        return wait_for(finished, timeout, f"job {job_id} to end ({self.progress(job_id)})", step=0.1)

    def progress(self, job_id: str) -> str:
        return f"{self.store.get_job(job_id).state}, segments {self.store.counts(job_id)}"

    def logs(self) -> str:
        return "\n".join(w.log() for w in self.workers)

    def summaries(self, job_id: str) -> int:
        return self.logs().count(f"job {job_id} summarised")

    def rows(self, job_id: str) -> list[tuple[int, str, int]]:
        """Every stored segment row as (index, state, attempts), duplicates included."""
        with self.store.session() as s:
            got = s.execute(
                select(SegmentDbRow.index, SegmentDbRow.state, SegmentDbRow.attempts)
                .where(SegmentDbRow.job_id == job_id)
                .order_by(SegmentDbRow.index)
            ).all()
        return [(int(i), str(st), int(a)) for i, st, a in got]

    def frame_counts(self, job_id: str) -> dict[int, tuple[int, int]]:
        """index -> (frame rows stored, frames planned)."""
        with self.store.session() as s:
            stored = dict(
                s.execute(
                    select(FrameDbRow.segment_index, func.count())
                    .where(FrameDbRow.job_id == job_id)
                    .group_by(FrameDbRow.segment_index)
                ).all()
            )
            planned = s.execute(
                select(SegmentDbRow.index, SegmentDbRow.planned_frames).where(SegmentDbRow.job_id == job_id)
            ).all()
        return {int(i): (int(stored.get(i, 0)), int(p)) for i, p in planned}


def worker_env(settings: Settings, failpoints: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMESCRIBE_") and k != "DASHSCOPE_API_KEY"}
    env.update(
        FRAMESCRIBE_BROKER_URL=settings.broker_url,
        FRAMESCRIBE_DATABASE_URL=settings.resolved_database_url,
        FRAMESCRIBE_DATA_DIR=str(settings.data_dir),
        FRAMESCRIBE_DESCRIBER__KIND="local",
        FRAMESCRIBE_WORKER__QUEUE=settings.worker.queue,
        FRAMESCRIBE_FAILPOINTS=str(failpoints),
        FRAMESCRIBE_SCHEDULER__ALLOW_PRIVATE_URLS=json.dumps(settings.scheduler.allow_private_urls),
        PYTHONUNBUFFERED="1",
        **{f"FRAMESCRIBE_WORKER__{k.upper()}": str(v) for k, v in WORKER_LIMITS.items()},
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def cluster(
    tmp: Path, database_url: str, broker_url: str | None = None, workers: int = 2, **extra_env: str
) -> Iterator[Cluster]:
    """Start ``workers`` real workers on a unique queue; stop them and clear the queue's keys afterwards."""
    if broker_url is None and not answering(6379):
        pytest.skip("Redis is not answering on 127.0.0.1:6379 (scripts/services starts it)")
    queue = f"fs-test-{uuid.uuid4().hex[:12]}"
    settings = load_settings(
        broker_url=broker_url or f"{SHARED_REDIS}/{BROKER_DB}",
        database_url=database_url,
        data_dir=tmp / "data",
        describer={"kind": "local"},
        worker={**WORKER_LIMITS, "queue": queue},
        scheduler={"allow_private_urls": ["127.0.0.1"]},
    )
    failpoints = tmp / "failpoints"
    failpoints.mkdir(parents=True, exist_ok=True)
    store = SqlResultStore(database_url)  # migrates before any worker starts
    env = worker_env(settings, failpoints, **extra_env)
    c = Cluster(settings, store, env, failpoints)
    try:
        c.start(workers)
        yield c
    finally:
        c.stop()
        store.close()
        _clear_queue(settings.broker_url, queue)


def _clear_queue(broker_url: str, queue: str) -> None:
    """Delete the queue's keys (its priority lists included) and the unacked deliveries routed to it: a
    worker killed whole leaves those in the shared ``unacked`` hash, and another test's workers would
    restore them into this dead queue later."""
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(broker_url, socket_timeout=2)
        keys = list(client.scan_iter(match=f"*{queue}*"))
        if keys:
            client.delete(*keys)
        tags = []
        for tag, raw in client.hscan_iter("unacked", count=500):
            with contextlib.suppress(ValueError, TypeError, IndexError):
                if json.loads(raw)[2] == queue:
                    tags.append(tag)
        if tags:
            client.hdel("unacked", *tags)
            client.zrem("unacked_index", *tags)
