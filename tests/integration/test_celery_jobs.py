"""Distributed jobs with real ``celery worker`` processes on Redis: nothing lost, nothing doubled.

Workers are subprocesses (two, ``-c 1`` prefork each) started by the fixtures in celery_fixtures.py;
crash moments are made deterministic with failpoints (worker/failpoints.py). Clip: ``clip_12s``
(12 s) cut into 2 s segments at 2 fps -> 6 segments of 4 frames.
"""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import logging
import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.fakes.dashscope_server import Behavior, FakeDashScope
from tests.integration.celery_fixtures import (
    LIMITER_DB,
    REPO,
    SHARED_REDIS,
    Cluster,
    RedisServer,
    answering,
    cluster,
    pg_database,
    wait_for,
)
from worker.adapters.stores.schema import JobRow
from worker.celery_app import check_settings, task_modules
from worker.config import load_settings
from worker.errors import ConfigError
from worker.ratelimit import RedisRateLimiter

pytestmark = pytest.mark.services
N = 6  # segments of clip_12s at 2 s each
POINTS = ("before_describe", "after_describe", "after_store")


RATE = 4  # DashScope calls per second allowed across all workers (jobs with describer=dashscope)
DASHSCOPE_KEY = f"sk-celery-{uuid.uuid4().hex[:8]}"  # unique: the shared limiter is keyed by account


@pytest.fixture(scope="module")
def fake_dashscope() -> Iterator[FakeDashScope]:
    """The loopback DashScope fake; every reply is one fixed sentence."""
    with FakeDashScope() as fake:
        yield fake


@pytest.fixture(scope="module")
def sqlite_cluster(tmp_path_factory: pytest.TempPathFactory, fake_dashscope: FakeDashScope) -> Iterator[Cluster]:
    """Two workers, SQLite store, a unique queue on Redis DB 1. Jobs describe locally unless their
    options say ``describer: dashscope`` (then: the fake, RATE calls/s and 2 in flight across workers)."""
    tmp = tmp_path_factory.mktemp("celery-sqlite")
    dashscope_env = {
        "FRAMESCRIBE_DASHSCOPE__API_KEY": DASHSCOPE_KEY,
        "FRAMESCRIBE_DASHSCOPE__BASE_URL": fake_dashscope.base_http_api_url,
        "FRAMESCRIBE_DASHSCOPE__RATE_LIMIT_PER_S": str(RATE),
        "FRAMESCRIBE_DASHSCOPE__MAX_IN_FLIGHT": "2",
        "FRAMESCRIBE_DASHSCOPE__BACKOFF_BASE_S": "0.3",
        "FRAMESCRIBE_DASHSCOPE__BACKOFF_MAX_S": "1",
        "FRAMESCRIBE_DASHSCOPE__MAX_ATTEMPTS": "10",
        "NO_PROXY": "127.0.0.1,localhost",
        # a DashScope segment may wait for the shared limiter and 429 back-offs: more than the 6 s soft limit
        "FRAMESCRIBE_WORKER__TASK_TIME_LIMIT_S": "30",
        "FRAMESCRIBE_WORKER__VISIBILITY_TIMEOUT_S": "40",
    }
    with cluster(tmp, f"sqlite:///{tmp / 'fs.db'}", **dashscope_env) as c:
        yield c


@pytest.fixture(scope="module")
def postgresql_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two workers, a fresh PostgreSQL database, a unique queue on Redis DB 1."""
    tmp = tmp_path_factory.mktemp("celery-pg")
    with pg_database() as url, cluster(tmp, url) as c:
        yield c


def submit(c: Cluster, clip: Path, arm: tuple[tuple[int, str, str], ...] = (), **options: Any) -> str:
    """Store a job, arm failpoints for it, then queue it."""
    from worker.adapters.queue import CeleryEnqueuer

    job, _ = c.store.create_job(str(clip), clip.name, {"segment_seconds": 2, "fps": 2, **options})
    for index, point, action in arm:
        c.arm(job.id, index, point, action)
    CeleryEnqueuer(c.settings).enqueue_job(job.id)
    return job.id


def cli(c: Cluster, *args: str) -> str:
    import worker.cli_queue  # noqa: F401  (registers the queue commands)
    from worker.cli import app

    result = CliRunner().invoke(app, list(args), env=c.env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout  # stderr holds notices (which store, no worker)


def ended(c: Cluster, job_id: str) -> int:
    """Segment tasks of the job that returned (killed deliveries never do)."""
    return len(re.findall(rf"job {job_id} segment \d+ ended: ", c.logs()))


def assert_exactly_once(c: Cluster, job_id: str, summaries: int = 1) -> None:
    rows = c.rows(job_id)
    assert [r[0] for r in rows] == list(range(N)), rows  # one row per segment, no duplicate
    for index, (stored, planned) in c.frame_counts(job_id).items():
        if c.store.segment_state(job_id, index) == "done":
            assert stored == planned == 4, (index, stored, planned)
    assert c.store.get_job(job_id).summary is not None
    # the summary is stored before its log line is written: wait for the line, then count it
    wait_for(lambda: c.summaries(job_id) >= summaries, 10, f"the summary log line of job {job_id}")
    assert c.summaries(job_id) == summaries


# -- the happy path, on both stores -------------------------------------------------------------
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_job_over_two_workers(store: str, request: pytest.FixtureRequest, clip_12s: Path) -> None:
    c: Cluster = request.getfixturevalue(f"{store}_cluster")
    # Hold segment 0 in whichever worker takes it until the other worker has stored a segment: both
    # workers then run segments of the one job. Held only that long (not until segments 1-5 are all done):
    # under load, five segments could outlast the held task's 6 s soft limit and fail segment 0.
    job_id = submit(c, clip_12s, arm=((0, "before_describe", "hold"),))
    c.wait_held(job_id, 0, "before_describe")
    wait_for(lambda: c.store.counts(job_id).get("done", 0) >= 1, 60, "the other worker to store a segment")
    c.release(job_id, 0, "before_describe")
    job = c.wait(job_id)

    assert job.state == "done"
    assert c.rows(job_id) == [(i, "done", 1) for i in range(N)]
    assert_exactly_once(c, job_id)
    both = lambda: all("framescribe.run_segment[" in w.log() and "succeeded" in w.log() for w in c.workers)  # noqa: E731
    wait_for(both, 10, "both workers' task logs")  # a worker's log line may land after the job is stored
    assert job.summary is not None and job.summary["segments_done"] == N


# -- crashes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("point", POINTS)
def test_sigkill_mid_segment_is_redelivered_once(sqlite_cluster: Cluster, clip_12s: Path, point: str) -> None:
    c = sqlite_cluster
    job_id = submit(c, clip_12s, arm=((2, point, "kill"),))
    job = c.wait(job_id)

    assert job.state == "done"
    assert (c.failpoints / f"{job_id}.2.{point}.fired").exists()  # the pool child really died there
    # Its message comes back (after a kill past the store write, possibly after another task finished the job).
    wait_for(lambda: f"job {job_id} segment 2 ended: done" in c.logs(), 30, "the redelivered task to end")
    assert f"job {job_id} segment 2: delivery 2" in c.logs()
    assert c.logs().count(f"job {job_id} segment 2 ended") == 1  # the killed delivery never ended
    assert_exactly_once(c, job_id)
    attempts = {i: a for i, _, a in c.rows(job_id)}
    # Killed after the store write: the redelivery finds the row done and only finishes the job.
    assert attempts[2] == (1 if point == "after_store" else 2)
    assert all(attempts[i] == 1 for i in attempts if i != 2)


def test_redelivery_cap_fails_a_segment_that_always_kills_its_worker(sqlite_cluster: Cluster, clip_12s: Path) -> None:
    c = sqlite_cluster
    cap = c.settings.worker.max_redeliveries
    job_id = submit(c, clip_12s, arm=((0, "before_describe", "always-kill"),))
    job = c.wait(job_id)

    assert job.state == "partial"
    seg = c.store.segment(job_id, 0)
    assert seg.state == "failed"
    assert f"died {cap + 1} times" in (seg.error or "")
    assert seg.attempts == cap + 1
    assert [st for _, st, _ in c.rows(job_id)[1:]] == ["done"] * (N - 1)
    assert_exactly_once(c, job_id)


# -- cancel, retry, idempotency ------------------------------------------------------------------
def test_cancel_keeps_finished_segments_and_retry_requeues_the_rest(
    sqlite_cluster: Cluster, clip_12s: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = sqlite_cluster
    caplog.set_level(logging.INFO, logger="worker.service.jobs")
    job_id = submit(c, clip_12s, arm=((2, "before_describe", "hold"), (3, "before_describe", "hold")))
    c.wait_held(job_id, 2, "before_describe")
    c.wait_held(job_id, 3, "before_describe")
    assert c.store.counts(job_id) == {"done": 2, "running": 2, "pending": 2}

    assert "cancelled" in cli(c, "cancel", job_id)  # the CLI builds the summary at once
    c.release(job_id, 2, "before_describe")
    c.release(job_id, 3, "before_describe")
    wait_for(lambda: ended(c, job_id) >= N, 30, "every segment task of the job to end")
    job = c.store.get_job(job_id)
    assert job.state == "cancelled"
    assert [st for _, st, _ in c.rows(job_id)] == ["done", "done"] + ["cancelled"] * 4  # running results discarded
    assert job.summary is not None and job.summary["segments_done"] == 2
    local = [r for r in caplog.records if r.getMessage().startswith(f"job {job_id} summarised: cancelled")]
    assert len(local) == 1
    assert_exactly_once(c, job_id, summaries=0)  # ... and no worker summarised it again

    assert "4 segment(s) queued again" in cli(c, "retry", job_id)
    job = c.wait(job_id, states=("done",))
    assert [a for _, _, a in c.rows(job_id)] == [1, 1, 2, 2, 1, 1]
    assert_exactly_once(c, job_id, summaries=1)


def test_retry_requeues_only_failed_segments(sqlite_cluster: Cluster, clip_12s: Path) -> None:
    c = sqlite_cluster
    job_id = submit(c, clip_12s, arm=((4, "before_describe", "reject"),))
    job = c.wait(job_id)
    assert job.state == "partial"
    assert c.store.segment(job_id, 4).state == "failed"

    assert "1 segment(s) queued again" in cli(c, "retry", job_id)
    job = c.wait(job_id, states=("done",))
    assert [a for _, _, a in c.rows(job_id)] == [1, 1, 1, 1, 2, 1]
    assert_exactly_once(c, job_id, summaries=2)


def test_transient_describer_error_is_retried_by_celery(sqlite_cluster: Cluster, clip_12s: Path) -> None:
    c = sqlite_cluster
    job_id = submit(c, clip_12s, arm=((3, "before_describe", "transient"),))
    assert c.wait(job_id).state == "done"
    assert f"job {job_id} segment 3: failpoint before_describe: the service is busy" in c.logs()
    assert "(segment 3); retrying in" in c.logs()
    assert [a for _, _, a in c.rows(job_id)] == [1, 1, 1, 2, 1, 1]
    assert_exactly_once(c, job_id)


def test_auth_error_stops_the_whole_job(sqlite_cluster: Cluster, clip_12s: Path) -> None:
    c = sqlite_cluster
    job_id = submit(c, clip_12s, arm=((0, "before_describe", "auth"),))
    job = c.wait(job_id)
    assert job.state in ("failed", "partial")  # segments already running elsewhere may still land
    states = [st for _, st, _ in c.rows(job_id)]
    assert states[0] == "failed" and "cancelled" in states
    assert "the API key was refused" in (job.summary or {}).get("text", "")
    assert_exactly_once(c, job_id)


def test_repeated_submit_with_one_idempotency_key_makes_one_job(sqlite_cluster: Cluster, clip_12s: Path) -> None:
    c = sqlite_cluster
    key = f"nightly-{time.time_ns()}"
    args = ("submit", str(clip_12s), "--segment-seconds", "2", "--fps", "2", "--idempotency-key", key)
    first = cli(c, *args).strip()
    second = cli(c, *args).strip()
    assert first == second
    with c.store.session() as s:
        assert s.scalar(select(func.count()).select_from(JobRow).where(JobRow.idempotency_key == key)) == 1
    c.wait(first)
    assert cli(c, "status", first, "--follow", "--interval", "0.2").strip().endswith(f"{first} done: 6/6 segments done")
    assert c.logs().count(f"job {first}: {N} segment task(s) queued") == 1  # planned once
    assert_exactly_once(c, first)


# -- sources ------------------------------------------------------------------------------------
@pytest.fixture
def http_clip(clip_12s: Path) -> Iterator[str]:
    """The clip served over HTTP on 127.0.0.1 (the workers allow 127.0.0.1 for this test)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(clip_12s.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{clip_12s.name}"
    server.shutdown()
    server.server_close()


def test_url_source_is_downloaded_by_the_worker(sqlite_cluster: Cluster, http_clip: str, clip_12s: Path) -> None:
    c = sqlite_cluster
    job, _ = c.store.create_job(http_clip, clip_12s.name, {"segment_seconds": 2, "fps": 2})
    from worker.adapters.queue import CeleryEnqueuer

    CeleryEnqueuer(c.settings).enqueue_job(job.id)
    assert c.wait(job.id).state == "done"
    downloaded = c.settings.data_dir / "sources" / job.id / clip_12s.name
    assert downloaded.read_bytes() == clip_12s.read_bytes()
    assert_exactly_once(c, job.id)


# -- the broker restarts -------------------------------------------------------------------------
def test_job_finishes_when_redis_restarts_mid_job(tmp_path: Path, clip_12s: Path) -> None:
    """A private redis-server (AOF on, as in docker-compose.yml) is restarted while segment 1 is held
    mid-task: queued messages survive, the interrupted one comes back via the visibility timeout."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        with cluster(tmp_path, f"sqlite:///{tmp_path / 'fs.db'}", broker_url=server.url) as c:
            job_id = submit(c, clip_12s, arm=((1, "before_describe", "hold"),))
            c.wait_held(job_id, 1, "before_describe")
            server.restart()
            c.release(job_id, 1, "before_describe")
            job = c.wait(job_id, timeout=90)
            assert job.state == "done"
            assert_exactly_once(c, job_id)
    finally:
        server.stop()


# -- the shared DashScope limiter ----------------------------------------------------------------
_CALLER = r"""
import json, sys, time, urllib.error, urllib.request
import redis
from worker.ratelimit import RedisRateLimiter
url, key, calls, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
client = redis.Redis.from_url(sys.argv[5])
lim = RedisRateLimiter(client, key, max_concurrency=2, rate_per_s=10, lease_s=30, timeout_s=60)
grants, blocks, ok = [], [], 0
while ok < calls:
    with lim.acquire() as permit:
        grants.append(permit.granted_at)
        try:
            urllib.request.urlopen(url, timeout=10).read()
            ok += 1
            continue
        except urllib.error.HTTPError as exc:
            assert exc.code == 429, exc.code
            retry_after = float(exc.headers["Retry-After"])
    until = lim.penalise(retry_after)
    blocks.append([until - retry_after, until])
json.dump({"grants": grants, "blocks": blocks}, open(out, "w"))
"""


class _Storm(http.server.BaseHTTPRequestHandler):
    """Answers 429 (Retry-After 0.3 s) to the first ``storm`` requests, then 200; tracks calls in flight."""

    lock = threading.Lock()
    storm = 6
    seen = 0
    in_flight = 0
    max_in_flight = 0

    def do_GET(self) -> None:
        cls = type(self)
        with cls.lock:
            cls.seen += 1
            n = cls.seen
            cls.in_flight += 1
            cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
        time.sleep(0.03)
        with cls.lock:
            cls.in_flight -= 1
        if n <= cls.storm:
            self.send_response(429)
            self.send_header("Retry-After", "0.3")
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


def test_rate_limit_holds_across_processes_through_a_429_storm(tmp_path: Path) -> None:
    """Four processes share one limiter (2 in flight, 10/s) against a server that first answers 429:
    grants stay 0.1 s apart on Redis' clock, none falls inside a back-off, never more than 2 in flight.
    (The DashScope describer was not in the tree yet; this drives the limiter with plain HTTP calls.)"""
    if not answering(6379):
        pytest.skip("Redis is not answering on 127.0.0.1:6379")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Storm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    key = f"framescribe:rl:test:{time.time_ns()}"
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    outs = [tmp_path / f"caller{i}.json" for i in range(4)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    broker = f"{SHARED_REDIS}/{LIMITER_DB}"
    cmd = [sys.executable, "-c", _CALLER, url, key, "6"]
    procs = [subprocess.Popen([*cmd, str(out), broker], cwd=REPO, env=env) for out in outs]
    try:
        assert [p.wait(60) for p in procs] == [0, 0, 0, 0]
    finally:
        server.shutdown()
        server.server_close()
        client = redis.Redis.from_url(f"{SHARED_REDIS}/{LIMITER_DB}")
        client.delete(*[f"{key}:{part}" for part in ("holders", "tat", "blocked", "grants", "penalties")])
    results = [json.loads(o.read_text()) for o in outs]
    grants = sorted(g for r in results for g in r["grants"])
    blocks = [b for r in results for b in r["blocks"]]

    assert len(grants) == _Storm.seen == 4 * 6 + _Storm.storm  # every grant made exactly one call
    assert len(blocks) == _Storm.storm
    assert min(b - a for a, b in itertools.pairwise(grants)) >= 0.1 - 1e-6
    assert max(sum(1 for g in grants if t <= g < t + 1.0) for t in grants) <= 10
    assert not [g for g in grants for start, end in blocks if start <= g < end]
    assert _Storm.max_in_flight <= 2


def test_429_storm_through_real_workers_stays_under_the_shared_rate(
    sqlite_cluster: Cluster, fake_dashscope: FakeDashScope, clip_12s: Path
) -> None:
    """Both workers call the DashScope fake, which answers the first five calls with 429: the job
    finishes, every call took a grant from the shared limiter, grants are >= 1/RATE apart (so no
    one-second window holds more than RATE calls), and none was granted while a back-off was in force."""
    c, fake = sqlite_cluster, fake_dashscope
    fake.reset()
    fake.reply_fn = lambda rec: "A test pattern scrolls from left to right."
    fake.enqueue(*[Behavior.error("Throttling.RateQuota", retry_after=0.5) for _ in range(5)])
    limiter = RedisRateLimiter.from_settings(
        load_settings(broker_url=c.settings.broker_url, dashscope={"api_key": DASHSCOPE_KEY})
    )
    limiter.reset()
    job_id = submit(c, clip_12s, describer="dashscope")
    try:
        job = c.wait(job_id, timeout=90)
        grants, penalties = limiter.recent_grants(), limiter.recent_penalties()
    finally:
        limiter.reset()

    assert job.state == "done"
    assert_exactly_once(c, job_id)
    calls = fake.requests_of("generation")
    assert sum(r.response_status == 429 for r in calls) == 5
    assert len(grants) == len(calls)  # every model call, throttled or not, went through the limiter
    assert min(b - a for a, b in itertools.pairwise(grants)) >= 1 / RATE - 1e-6
    assert max(sum(1 for g in grants if t <= g < t + 1.0) for t in grants) <= RATE
    assert penalties  # a 429 paused every worker ...
    assert not [g for g in grants for start, end in penalties if start <= g < end]  # ... and none called meanwhile


# -- configuration, deployment files, retention ----------------------------------------------------
def test_visibility_timeout_must_outlast_time_limit_and_retry_delay(tmp_path: Path) -> None:
    bad = load_settings(worker={"task_time_limit_s": 600, "retry_max_delay_s": 120, "visibility_timeout_s": 700})
    with pytest.raises(ConfigError, match=r"visibility_timeout_s \(700 s\) must be greater than .* = 720 s"):
        check_settings(bad)
    check_settings(load_settings())  # the defaults are consistent

    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMESCRIBE_")}
    env.update(FRAMESCRIBE_WORKER__VISIBILITY_TIMEOUT_S="700", FRAMESCRIBE_WORKER__TASK_TIME_LIMIT_S="600",
               FRAMESCRIBE_WORKER__RETRY_MAX_DELAY_S="120", FRAMESCRIBE_DATA_DIR=str(tmp_path))  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-c", "from worker.cli import main; main()", "worker"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2  # a bad configuration is bad input
    assert "framescribe: error: worker.visibility_timeout_s (700 s) must be greater than" in run.stderr
    assert "Traceback" not in run.stderr


def test_compose_file_describes_a_valid_deployment() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"redis", "postgres", "worker", "scheduler", "beat"}
    for name, svc in services.items():
        assert "healthcheck" in svc, name
        assert "image" in svc or "build" in svc, name
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # `--scale worker=N` must work
    assert worker["command"][:2] == ["framescribe", "worker"]
    assert services["scheduler"]["command"][:2] == ["framescribe", "scheduler"]
    assert services["beat"]["command"][:2] == ["framescribe", "beat"]
    for name in ("worker", "scheduler", "beat"):
        env = services[name]["environment"]
        assert "DASHSCOPE_API_KEY" in env and env["FRAMESCRIBE_BROKER_URL"].startswith("redis://"), name
        assert env["FRAMESCRIBE_DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name
    declared = set(compose["volumes"])
    mounts = [v.split(":")[0] for svc in services.values() for v in svc.get("volumes", [])]
    used = {m for m in mounts if not m.startswith(("/", ".", "$"))}
    assert used <= declared
    assert "--appendonly" in services["redis"]["command"] and "noeviction" in services["redis"]["command"]
    # the workers' timing settings pass the start-up check
    prefix = "FRAMESCRIBE_WORKER__"
    w = {k.removeprefix(prefix).lower(): int(v) for k, v in worker["environment"].items()
         if k.startswith(prefix) and not k.endswith("API_URL")}  # fmt: skip
    check_settings(load_settings(worker=w))
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install" in dockerfile and "\nUSER " in dockerfile  # installed, and not run as root


def test_retention_keeps_one_thumbnail_per_segment(tmp_path: Path) -> None:
    from worker.retention import collect

    settings = load_settings(data_dir=tmp_path, worker={"frames_retention_days": 7})
    old, new = time.time() - 8 * 86400, time.time() - 86400
    for job, stamp in (("old", old), ("new", new)):
        for seg in range(2):
            folder = tmp_path / "jobs" / job / f"seg_{seg:05d}"
            folder.mkdir(parents=True)
            for n in range(5):
                f = folder / f"frame_{n:04d}_{n * 500:010d}ms.jpg"
                f.write_bytes(b"x" * 100)
                os.utime(f, (stamp, stamp))
    src = tmp_path / "sources" / "old"
    src.mkdir(parents=True)
    (src / "clip.mp4").write_bytes(b"v")
    os.utime(src, (old, old))

    report = collect(settings)
    assert report.as_dict() == {"segments": 2, "files_deleted": 8, "bytes_freed": 800, "sources_deleted": 1,
                                "deleted_jobs_swept": 0, "review_copies_deleted": 0}  # fmt: skip
    for seg in range(2):
        kept = sorted(p.name for p in (tmp_path / "jobs" / "old" / f"seg_{seg:05d}").iterdir())
        assert kept == ["frame_0002_0000001000ms.jpg"]  # the middle frame
        assert len(list((tmp_path / "jobs" / "new" / f"seg_{seg:05d}").iterdir())) == 5
    assert not src.exists()
    assert collect(settings).files_deleted == 0  # idempotent


def test_every_task_lives_in_worker_tasks() -> None:
    """Job tasks in worker/tasks.py; live cameras' stream task in their own package's task module."""
    import worker.tasks
    from worker.celery_app import FIRE_SCHEDULE, PLAN_JOB, RUN_SEGMENT, SEND_WEBHOOK, app

    assert task_modules() == ["worker.tasks", "worker.live.tasks"]
    assert {PLAN_JOB, RUN_SEGMENT, FIRE_SCHEDULE, SEND_WEBHOOK} <= set(app.tasks)
    assert worker.tasks.send_webhook.name == SEND_WEBHOOK


# -- soak ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_reaper_recovers_a_job_whose_messages_a_bare_redis_lost(tmp_path: Path, clip_12s: Path) -> None:
    """Redis without persistence restarts mid-job: queued and unacked messages are gone. The reaper
    (beat runs it; here the test sends it) re-queues the stale segments and the job finishes."""
    from worker.adapters.queue.celery import producer
    from worker.celery_app import REAP_STALE

    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    try:
        with cluster(tmp_path, f"sqlite:///{tmp_path / 'fs.db'}", broker_url=server.url) as c:
            job_id = submit(c, clip_12s, arm=((1, "before_describe", "hold"),))
            c.wait_held(job_id, 1, "before_describe")
            server.restart()
            c.release(job_id, 1, "before_describe")
            assert redis.Redis(port=server.port).llen(c.queue) == 0  # the job's messages are lost

            def reaped() -> bool:
                producer(c.settings).send_task(REAP_STALE, queue=c.queue)
                return c.store.get_job(job_id).state in ("done", "partial", "failed")

            wait_for(reaped, 120, "the reaper to recover the job", step=3)
            job = c.wait(job_id)
            assert job.state == "done"
            assert "recovery: " in c.logs()  # the recovery loop (every worker runs it) re-sent the lost work
            assert_exactly_once(c, job_id)
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_kill_points_repeated(sqlite_cluster: Cluster, clip_12s: Path, point: str) -> None:
    """20 jobs per kill point, a random segment each: always N rows, one summary, state done."""
    c = sqlite_cluster
    rng = random.Random(point)
    for _ in range(20):
        index = rng.randrange(N)
        job_id = submit(c, clip_12s, arm=((index, point, "kill"),))
        assert c.wait(job_id).state == "done"
        assert_exactly_once(c, job_id)
        assert (c.failpoints / f"{job_id}.{index}.{point}.fired").exists()
