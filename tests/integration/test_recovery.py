"""No job left behind (issue 16): single faults with the PRODUCTION defaults (visibility timeout 3,600 s,
time limit 1,800 s, lease 20 s, recovery loop every 5 s), each asserting that every job reaches a
terminal state within 60 s of the fault ending, with 0 lost and 0 duplicate rows, exactly one summary and
exactly one webhook delivery id. No beat runs in these clusters: the recovery loop lives in the workers,
so "beat killed" costs nothing (beat's own Redis outage is tested at the end).

Recovery seconds are written for ``scripts/reliability-report`` (``recovery_<fault>.json``)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ffmpeg_video
from tests.integration.api_fixtures import WebhookReceiver
from tests.integration.celery_fixtures import Cluster, RedisServer, wait_for
from tests.integration.fault_fixtures import (
    TERMINAL,
    assert_job_clean,
    children,
    fault_cluster,
    kill_pid,
    private_postgres,
    write_figures,
)
from worker.service.webhooks import WEBHOOK_HOLD_S

pytestmark = pytest.mark.services
# The shipped worker defaults, not shortened: recovery must be fast because of leases, not timeouts.
PRODUCTION = {"task_time_limit_s": 1800, "retry_max_delay_s": 600, "visibility_timeout_s": 3600, "max_redeliveries": 5}
BOUND_S = 60.0  # every job terminal within this of the fault ending
SECRET = "s" * 32


@pytest.fixture(scope="module")
def clip_4s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ffmpeg_video(tmp_path_factory.mktemp("recovery-media") / "clip4.mp4", seconds=4)


@contextmanager
def prod_cluster(tmp: Path, **kw: object) -> Iterator[Cluster]:
    with fault_cluster(tmp, limits=PRODUCTION, env={"FRAMESCRIBE_SCHEDULER__WEBHOOK_SECRET": SECRET}, **kw) as c:  # type: ignore[arg-type]
        for key in ("LEASE_TTL_S", "LEASE_HEARTBEAT_S", "REAPER_INTERVAL_S", "REQUEUE_GRACE_S"):
            assert f"FRAMESCRIBE_WORKER__{key}" not in c.env  # the recovery settings are the defaults
        yield c


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r  # type: ignore[misc]


def submit(c: Cluster, clip: Path, hooks: WebhookReceiver, arm: tuple[tuple[int, str, str], ...] = ()) -> str:
    from worker.adapters.queue import CeleryEnqueuer

    opts = {"segment_seconds": 2, "fps": 2}
    job, _ = c.store.create_job(str(clip), clip.name, opts, webhook_url=hooks.url("/hook"))
    for index, point, action in arm:
        c.arm(job.id, index, point, action)
    CeleryEnqueuer(c.settings).enqueue_job(job.id)
    return job.id


def delivery_ids(hooks: WebhookReceiver, job_id: str) -> set[str]:
    with hooks.lock:
        hits = list(hooks.hits)
    return {
        h.headers.get("X-Framescribe-Delivery", "")
        for h in hits
        if json.loads(h.body or b"{}").get("job", {}).get("id") == job_id
    }


def settle(c: Cluster, job_ids: list[str], fault_end: float, hooks: WebhookReceiver) -> dict[str, object]:
    """Wait (at most BOUND_S after ``fault_end``) for every job to be terminal with its summary; then check
    the invariants and that each job's webhook came with exactly one delivery id."""
    ended: dict[str, float] = {}

    def all_ended() -> bool:
        for job_id in job_ids:
            if job_id not in ended:
                job = c.store.get_job(job_id)
                if job.state in TERMINAL and job.summary is not None:
                    ended[job_id] = time.monotonic()
        return len(ended) == len(job_ids)

    left = fault_end + BOUND_S - time.monotonic()
    try:
        wait_for(all_ended, max(left, 0.1), "every job to end", step=0.2)
    except AssertionError:
        stuck = {j: c.progress(j) for j in job_ids if j not in ended}
        raise AssertionError(f"not terminal {BOUND_S:.0f} s after the fault: {stuck}\n{c.logs()[-4000:]}") from None
    states = [assert_job_clean(c, j)["state"] for j in job_ids]
    for job_id in job_ids:
        # a sender killed mid-attempt holds the row WEBHOOK_HOLD_S, then the recovery loop sends it again
        webhook_s = WEBHOOK_HOLD_S + 25
        wait_for(lambda j=job_id: delivery_ids(hooks, j), webhook_s, f"the webhook of job {job_id}")  # type: ignore[misc]
        assert len(delivery_ids(hooks, job_id)) == 1, delivery_ids(hooks, job_id)
        sent = lambda j=job_id: [st for _, st, _ in c.store.outbox(j)] == ["sent"]  # noqa: E731
        wait_for(sent, webhook_s, f"the outbox row of job {job_id} to be marked sent")
    recovery = max(ended.values()) - fault_end
    return {"jobs": len(job_ids), "recovery_s": round(max(recovery, 0.0), 1), "states": sorted(set(states))}


def holder_of(c: Cluster, job_id: str, index: int, point: str) -> tuple[int, int]:
    """``(worker index, pool child pid)`` holding the segment at the failpoint."""
    c.wait_held(job_id, index, point, timeout=60)
    child = int((c.failpoints / f"{job_id}.{index}.{point}.held").read_text())
    for i, w in enumerate(c.workers):
        if w.proc is not None and child in children(w.proc.pid):
            return i, child
    raise AssertionError(f"no worker owns pool child {child}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


# -- SIGKILL ------------------------------------------------------------------------------------
@pytest.mark.parametrize("victim", ["pool-child", "worker-parent"])
def test_sigkill_mid_segment(tmp_path: Path, clip_12s: Path, hooks: WebhookReceiver, victim: str) -> None:
    """A worker's pool child, or its main process (the children die with it; its unacked messages would
    wait an hour for the visibility timeout), is killed while a segment runs: the segment's lease expires
    and the other worker's recovery loop re-queues it."""
    with prod_cluster(tmp_path) as c:
        job_id = submit(c, clip_12s, hooks, arm=((1, "before_describe", "hold"),))
        worker, child = holder_of(c, job_id, 1, "before_describe")
        proc = c.workers[worker].proc
        assert proc is not None
        kill_pid(child if victim == "pool-child" else proc.pid)
        fault_end = time.monotonic()
        wait_for(lambda: not alive(child), 10, "the pool child to die with its parent")
        figures = settle(c, [job_id], fault_end, hooks)
        assert c.store.get_job(job_id).state == "done"
    write_figures(f"recovery_sigkill_{victim}", figures)


def test_worker_killed_during_the_summary(tmp_path: Path, clip_4s: Path, hooks: WebhookReceiver) -> None:
    """The finisher dies right after claiming the summary: its lease expires and another finisher (sent
    by the recovery loop) writes the one summary and the one outbox row."""
    with prod_cluster(tmp_path) as c:
        job_id = submit(c, clip_4s, hooks, arm=((-1, "after_summary_claim", "kill"),))
        wait_for((c.failpoints / f"{job_id}.-1.after_summary_claim.fired").exists, 60, "the finisher to die")
        fault_end = time.monotonic()
        figures = settle(c, [job_id], fault_end, hooks)
        assert c.store.get_job(job_id).state == "done"
        assert "finishers_sent" in c.logs()  # taken over by the recovery loop, not by luck
    write_figures("recovery_kill_during_summary", figures)


# -- Redis --------------------------------------------------------------------------------------
@pytest.mark.parametrize("persistence", [True, False], ids=["aof-killed", "no-persistence"])
def test_redis_restart_mid_job(tmp_path: Path, clip_12s: Path, hooks: WebhookReceiver, persistence: bool) -> None:
    """redis-server is SIGKILLed (AOF on: queued and unacked messages survive) or restarted without
    persistence (every message lost) while a job runs; the job ends within the bound either way."""
    server = RedisServer(tmp_path / "redis", appendonly=persistence)
    server.start()
    try:
        with prod_cluster(tmp_path, broker_url=server.url) as c:
            job_id = submit(c, clip_12s, hooks, arm=((1, "before_describe", "hold"),))
            holder_of(c, job_id, 1, "before_describe")
            assert server.proc is not None
            server.proc.kill()
            server.proc.wait(10)
            server.proc = None
            if not persistence:
                shutil.rmtree(server.folder, ignore_errors=True)
            time.sleep(2)  # the outage
            server.start()
            fault_end = time.monotonic()
            c.release(job_id, 1, "before_describe")
            figures = settle(c, [job_id], fault_end, hooks)
            assert c.store.get_job(job_id).state == "done"
    finally:
        server.stop()
    write_figures(f"recovery_redis_{'aof' if persistence else 'no_persistence'}", figures)


# -- PostgreSQL ---------------------------------------------------------------------------------
@pytest.mark.parametrize("outage_s", [pytest.param(20, id="20s"), pytest.param(60, id="60s", marks=pytest.mark.slow)])
def test_postgres_down(tmp_path: Path, clip_12s: Path, hooks: WebhookReceiver, outage_s: int) -> None:
    """The result store is down for ``outage_s`` mid-job: tasks retry at most 5 s apart, leases lapse and
    are re-taken; the job ends within the bound of the database returning."""
    with private_postgres() as pg, prod_cluster(tmp_path, database_url=pg.url) as c:
        job_id = submit(c, clip_12s, hooks, arm=((1, "after_describe", "hold"),))
        holder_of(c, job_id, 1, "after_describe")
        pg.stop()
        c.release(job_id, 1, "after_describe")
        time.sleep(outage_s)
        pg.start()
        fault_end = time.monotonic()
        figures = settle(c, [job_id], fault_end, hooks)
        assert c.store.get_job(job_id).state == "done"
    write_figures(f"recovery_postgres_{outage_s}s", figures)


# -- the source ---------------------------------------------------------------------------------
def test_source_vanishing_after_planning(tmp_path: Path, clip_12s: Path, hooks: WebhookReceiver) -> None:
    """The video file is deleted after the job was planned: the segments not yet sampled fail saying
    so, the job ends (partial) within the bound, none stays running."""
    clip = tmp_path / "vanishing.mp4"
    shutil.copy(clip_12s, clip)
    with prod_cluster(tmp_path) as c:
        job_id = submit(c, clip, hooks, arm=((0, "before_describe", "hold"),))
        holder_of(c, job_id, 0, "before_describe")
        clip.unlink()
        fault_end = time.monotonic()
        c.release(job_id, 0, "before_describe")
        figures = settle(c, [job_id], fault_end, hooks)
        job = c.store.get_job(job_id)
        assert job.state in ("partial", "failed")
        failed = [r for r in c.store.segment_rows(job_id) if r.state == "failed"]
        assert failed and all(r.error and "vanishing.mp4" in r.error for r in failed), [r.error for r in failed]
    write_figures("recovery_source_vanished", figures)


# -- a kill storm -------------------------------------------------------------------------------
def _storm(tmp: Path, clip: Path, hooks: WebhookReceiver, seconds: float, seed: int) -> dict[str, object]:
    """10 jobs on 2 workers; for ``seconds`` a random pool child or worker main process is SIGKILLed every
    1-3 s (a killed worker is started again, as a supervisor would)."""
    rng = random.Random(seed)
    kills = 0
    with prod_cluster(tmp) as c:
        jobs = [submit(c, clip, hooks) for _ in range(10)]
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(rng.uniform(1, 3))
            w = rng.choice(c.workers)
            if w.proc is None or w.proc.poll() is not None:
                continue
            pool = children(w.proc.pid)
            if rng.random() < 0.7 and pool:
                kill_pid(rng.choice(pool))
            else:
                kill_pid(w.proc.pid)
                w.proc.wait(10)
                w.start()
            kills += 1
        fault_end = time.monotonic()
        figures = settle(c, jobs, fault_end, hooks)
    return {**figures, "kills": kills, "storm_s": seconds}


def test_kill_storm(tmp_path: Path, clip_12s: Path, hooks: WebhookReceiver) -> None:
    figures = _storm(tmp_path, clip_12s, hooks, 25.0, seed=16)
    write_figures("recovery_kill_storm", figures)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_kill_storm_repeated(tmp_path: Path, clip_12s: Path) -> None:
    runs = []
    for n in range(5):
        with WebhookReceiver() as hooks:
            runs.append(_storm(tmp_path / f"run{n}", clip_12s, hooks, 40.0, seed=n))  # type: ignore[arg-type]
    write_figures("recovery_kill_storm_x5", {"runs": runs, "worst_recovery_s": max(r["recovery_s"] for r in runs)})  # type: ignore[type-var]


# -- beat ---------------------------------------------------------------------------------------
def test_beat_rides_out_a_redis_restart(tmp_path: Path) -> None:
    """``framescribe beat`` loses Redis (its lock renewal fails) for a few seconds and keeps running."""
    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    log = tmp_path / "beat.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMESCRIBE_")}
    env.update(
        FRAMESCRIBE_BROKER_URL=server.url,
        FRAMESCRIBE_DATABASE_URL=f"sqlite:///{tmp_path / 'fs.db'}",
        FRAMESCRIBE_DATA_DIR=str(tmp_path / "data"),
        FRAMESCRIBE_WORKER__QUEUE=f"fs-beat-{uuid.uuid4().hex[:8]}",
        PYTHONUNBUFFERED="1",
    )
    with log.open("ab") as out:
        beat = subprocess.Popen([sys.executable, "-m", "worker.cli", "beat", "--max-interval", "1"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: "Acquired lock" in log.read_text(errors="replace"), 60, "beat to take its lock")
        server.stop()
        wait_for(lambda: "Redis unreachable" in log.read_text(errors="replace"), 30, "beat to notice the outage")
        time.sleep(3)
        assert beat.poll() is None, log.read_text(errors="replace")[-3000:]
        server.start()
        wait_for(lambda: "taken again" in log.read_text(errors="replace"), 30, "beat to take its lock again")
        assert beat.poll() is None, log.read_text(errors="replace")[-3000:]
    finally:
        if beat.poll() is None:
            os.killpg(beat.pid, signal.SIGTERM)
            beat.wait(20)
        server.stop()


# -- cancel before planning -----------------------------------------------------------------------
def test_cancel_through_the_api_before_planning_ends_the_job_with_summary_and_webhook(
    tmp_path: Path, hooks: WebhookReceiver
) -> None:
    """A job cancelled through the REST API while still queued (never planned): cancelled at once with a
    summary and its outbox row; the webhook goes out with that row's delivery id."""
    from tests.integration.api_fixtures import running_api
    from worker.service.webhooks import send_from_outbox

    with running_api(tmp_path, scheduler={"allow_private_urls": ["127.0.0.1"]}) as api:
        store = api.store()
        job, _ = store.create_job("/nowhere/never-planned.mp4", "never-planned.mp4", {}, webhook_url=hooks.url("/h"))
        with api.http() as http:
            resp = http.post(f"/v1/jobs/{job.id}/cancel")
        assert resp.status_code == 200 and resp.json()["state"] == "cancelled", resp.text
        got = store.get_job(job.id)
        assert got.state == "cancelled" and got.summary is not None and "Cancelled" in got.summary["text"]
        [(delivery_id, state, _)] = store.outbox(job.id)
        assert state == "pending" and api.enqueuer.webhooks == [job.id]  # queued at once, sent by a worker
        assert send_from_outbox(api.settings, job.id).delivered
        assert delivery_ids(hooks, job.id) == {delivery_id}
        assert store.outbox(job.id) == [(delivery_id, "sent", 1)]


# -- re-queued work goes first ------------------------------------------------------------------
def test_requeued_work_is_consumed_before_a_backlog_of_new_work(tmp_path: Path) -> None:
    """30 new plans wait in the queue; a re-queued segment (what the recovery loop and retries send) is
    the next message a consumer gets, and the recovery loop's scan sees every waiting message."""
    import redis as redis_lib
    from kombu import Connection

    from tests.integration.celery_fixtures import answering
    from tests.integration.fault_fixtures import FAULT_REDIS
    from worker.adapters.queue import CeleryEnqueuer
    from worker.adapters.queue.broker_scan import URGENT, list_keys, promote, scan
    from worker.celery_app import PLAN_JOB, RUN_SEGMENT
    from worker.config import load_settings

    if not answering(6379):
        pytest.skip("Redis is not answering on 127.0.0.1:6379")
    queue = f"fs-prio-{uuid.uuid4().hex[:8]}"
    settings = load_settings(broker_url=FAULT_REDIS, data_dir=tmp_path, worker={"queue": queue})
    enq = CeleryEnqueuer(settings)
    client = redis_lib.Redis.from_url(FAULT_REDIS)
    try:
        for n in range(30):
            enq.enqueue_job(f"new{n:02d}")
        enq.send(RUN_SEGMENT, ["old", 3], priority=URGENT)
        enq.enqueue_segment("behind", 1)  # a requeued copy waiting behind the backlog ...
        held = scan(client, queue, fresh_s=20)
        assert (RUN_SEGMENT, "old", 3) in held.waiting and held.complete
        assert promote(client, held.waiting[(RUN_SEGMENT, "behind", 1)])  # ... taken out to be re-sent urgent
        assert not promote(client, held.waiting[(RUN_SEGMENT, "behind", 1)]), "taken once"
        assert not promote(client, held.waiting[(RUN_SEGMENT, "old", 3)]), "already urgent: left alone"
        assert (RUN_SEGMENT, "behind", 1) not in scan(client, queue, fresh_s=20).waiting
        assert {k for k in held.waiting if k[0] == PLAN_JOB} == {(PLAN_JOB, f"new{n:02d}", -1) for n in range(30)}
        with Connection(FAULT_REDIS, transport_options={"priority_steps": [0, 3, 6, 9]}) as conn:
            q = conn.SimpleQueue(queue)
            first = q.get(timeout=5)
            assert first.headers["task"] == RUN_SEGMENT, first.headers
            first.ack()
            second = q.get(timeout=5)
            assert second.headers["task"] == PLAN_JOB
            second.ack()
            q.close()
    finally:
        for key in [*list_keys(queue), *client.scan_iter(match=f"*{queue}*")]:
            client.delete(key)
        client.close()


def test_a_lease_renewed_less_than_twice_per_ttl_is_refused() -> None:
    from worker.celery_app import check_settings
    from worker.config import load_settings
    from worker.errors import ConfigError

    with pytest.raises(ConfigError, match=r"lease_heartbeat_s \(15.0 s\) must be at most half"):
        check_settings(load_settings(worker={"lease_ttl_s": 20, "lease_heartbeat_s": 15}))
    check_settings(load_settings())  # the defaults are consistent
