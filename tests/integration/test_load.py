"""Bounded load on loopback: many jobs over two real workers against the DashScope fake, and the REST API
under a fixed-duration request loop. Figures go to $FRAMESCRIBE_FIGURES_DIR (job_load.json,
rest_load.json), which scripts/reliability-report embeds.

Jobs: ``clip_2s`` (2 s, one segment of 4 frames at 2 fps); the fake answers every model call after 1 s, and a
``describer: dashscope`` job makes two calls (its segment, then its summary). Fast tier: 30 jobs and a 20 s
REST run; slow tier: 200 jobs and 60 s.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import ffmpeg_video
from tests.fakes.dashscope_server import FakeDashScope
from tests.integration.celery_fixtures import REPO, Cluster, RedisServer, free_port, wait_for
from tests.integration.fault_fixtures import (
    FAULT_REDIS,
    TERMINAL,
    dashscope_env,
    fault_cluster,
    percentile,
    redis_audit,
    submit,
    worker_rss_kb,
    write_figures,
)
from worker.adapters.queue.broker_scan import list_keys
from worker.adapters.stores.sql import SqlResultStore

pytestmark = pytest.mark.services
KEY = f"sk-load-{uuid.uuid4().hex[:8]}"
LATENCY_S = 1.0


@pytest.fixture(scope="module")
def clip_2s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s, 320x240, 25 fps H.264 testsrc2: one 2 s segment of 4 frames at 2 fps."""
    return ffmpeg_video(tmp_path_factory.mktemp("load-media") / "clip2.mp4", seconds=2)


# -- jobs -------------------------------------------------------------------------------------------
class RssSampler:
    """Samples the workers' RSS (main + pool children, KiB) twice a second in a thread."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        return sum(worker_rss_kb(w) for w in self.c.workers)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.samples.append((time.monotonic(), self.now()))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def run_job_load(tmp: Path, clip: Path, jobs: int, broker: str) -> dict[str, Any]:
    """Queue ``jobs`` jobs at once over two workers; wait for all; check the queue, memory and Redis.

    ``broker`` is a Redis of this test's own: the audit counts every key of its database, and kombu's
    ``unacked`` hash is shared by every queue of a database."""
    with (
        FakeDashScope(latency_s=LATENCY_S) as fake,
        fault_cluster(tmp, broker_url=broker, env=dashscope_env(fake, KEY)) as c,
    ):
        client = redis.Redis.from_url(broker)
        # warm up: one job loads OpenCV and the SDK into each pool child before the baseline is taken
        for _ in range(2):
            c.wait(submit(c, clip, describer="dashscope", segment_seconds=2), timeout=60)
        keys_before = redis_audit(broker)
        calls_before = len(fake.requests_of("generation"))
        with RssSampler(c) as rss:
            rss_start = rss.now()
            started = time.monotonic()
            ids = [submit(c, clip, describer="dashscope", segment_seconds=2) for _ in range(jobs)]
            queued_s = time.monotonic() - started
            depth_max = 0

            def finished() -> bool:
                nonlocal depth_max
                depth_max = max(depth_max, sum(int(client.llen(k)) for k in list_keys(c.queue)))
                with c.store.session() as s:
                    from sqlalchemy import func, select

                    from worker.adapters.stores.schema import JobRow

                    n = s.scalar(
                        select(func.count()).select_from(JobRow).where(JobRow.id.in_(ids), JobRow.state.in_(TERMINAL))
                    )
                return n == jobs

            rss_mid = 0

            def half() -> bool:
                return sum(c.store.get_job(i).state in TERMINAL for i in ids[: jobs // 2]) == jobs // 2

            wait_for(half, 60 + jobs * 3, "half the jobs", step=1)
            rss_mid = rss.now()
            wait_for(finished, 60 + jobs * 3, f"{jobs} jobs to finish", step=1)
            elapsed = time.monotonic() - started
            rss_end = rss.now()
        drained = lambda: not any(client.llen(k) for k in list_keys(c.queue)) and client.hlen("unacked") == 0  # noqa: E731
        wait_for(drained, 30, "the queue to drain")
        jobs_rows = [c.store.get_job(i) for i in ids]
        latencies = [(j.finished_at - j.created_at).total_seconds() for j in jobs_rows if j.finished_at]
        states = {s: sum(j.state == s for j in jobs_rows) for s in {j.state for j in jobs_rows}}
        calls = fake.requests_of("generation")[calls_before:]
        keys_after = redis_audit(broker)
        summaries = sum(c.summaries(i) for i in ids)
        rows = sum(len(c.rows(i)) for i in ids)
    return {
        "jobs": jobs,
        "states": states,
        "summaries": summaries,
        "segment_rows": rows,
        "model_calls": len(calls),
        "model_latency_s": LATENCY_S,
        "submit_s": round(queued_s, 2),
        "elapsed_s": round(elapsed, 1),
        "jobs_per_min": round(jobs / elapsed * 60, 1),
        "job_latency_p50_s": round(percentile(latencies, 50), 2),
        "job_latency_p99_s": round(percentile(latencies, 99), 2),
        "queue_depth_max": depth_max,
        "rss_start_mb": round(rss_start / 1024, 1),
        "rss_mid_mb": round(rss_mid / 1024, 1),
        "rss_end_mb": round(rss_end / 1024, 1),
        "rss_peak_mb": round(max(v for _, v in rss.samples) / 1024, 1) if rss.samples else None,
        "redis_keys_no_ttl_before": keys_before["no_ttl"],
        "redis_keys_no_ttl_after": keys_after["no_ttl"],
        "redis_no_ttl_key_names": [k.replace(c.queue, "<queue>") for k in keys_after["no_ttl_keys"]],
        "redis_lists_after": {k: v for k, v in keys_after["lists"].items() if v},
        "redis_used_memory_mb": round(keys_after["used_memory"] / 2**20, 2),
    }


def check_job_load(fig: dict[str, Any]) -> None:
    jobs = fig["jobs"]
    assert fig["states"] == {"done": jobs}, fig["states"]
    assert fig["summaries"] == jobs and fig["segment_rows"] == jobs  # one row and one summary per job
    assert fig["model_calls"] == 2 * jobs  # a segment call and a summary call each, no retry, no duplicate
    assert not fig["redis_lists_after"]  # the queue drained
    # every key without a TTL is kombu's per-exchange binding bookkeeping (_kombu.*): a handful, however
    # many jobs ran; framescribe's own keys (delivery counters, limiter, reaper marks) expire or are deleted
    assert set(fig["redis_keys_no_ttl_after"]) <= {"_kombu"}, fig["redis_no_ttl_key_names"]
    assert fig["redis_keys_no_ttl_after"].get("_kombu", 0) <= 8, fig["redis_no_ttl_key_names"]
    # flat memory: after warm-up the workers grow by less than a quarter (+32 MB of allocator slack), and
    # the second half of the run adds under a tenth (+16 MB): a per-job leak would show in both
    assert fig["rss_end_mb"] <= fig["rss_start_mb"] * 1.25 + 32, fig
    assert fig["rss_end_mb"] <= fig["rss_mid_mb"] * 1.10 + 16, fig


def test_30_jobs_at_once(tmp_path: Path, clip_2s: Path, redis_server: RedisServer) -> None:
    fig = run_job_load(tmp_path, clip_2s, 30, redis_server.url)
    write_figures("job_load", fig)
    check_job_load(fig)


@pytest.mark.slow
def test_200_jobs_at_once(tmp_path: Path, clip_2s: Path, redis_server: RedisServer) -> None:
    fig = run_job_load(tmp_path, clip_2s, 200, redis_server.url)
    write_figures("job_load", fig)
    check_job_load(fig)


# -- REST -------------------------------------------------------------------------------------------
API_KEY = f"load-{uuid.uuid4().hex}"


@pytest.fixture
def api_process(tmp_path: Path, clip_2s: Path) -> Iterator[tuple[str, list[str], Path]]:
    """``framescribe scheduler`` as its own process on 127.0.0.1 (SQLite, Redis DB 15, one API key), with
    40 stored jobs to read; yields (base URL, job ids, media path)."""
    media = tmp_path / "media"
    media.mkdir()
    clip = media / "clip.mp4"
    clip.write_bytes(clip_2s.read_bytes())
    db = f"sqlite:///{tmp_path / 'api.db'}"
    store = SqlResultStore(db)
    ids = [store.create_job(str(clip), clip.name, {"segment_seconds": 2, "fps": 2})[0].id for _ in range(40)]
    store.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMESCRIBE_") and k != "DASHSCOPE_API_KEY"}
    env.update(
        FRAMESCRIBE_DATA_DIR=str(tmp_path / "data"),
        FRAMESCRIBE_DATABASE_URL=db,
        FRAMESCRIBE_BROKER_URL=FAULT_REDIS,
        FRAMESCRIBE_ALLOWED_ROOTS=json.dumps([str(media)]),
        FRAMESCRIBE_API_KEYS=API_KEY,
        FRAMESCRIBE_DESCRIBER__KIND="local",
        FRAMESCRIBE_WORKER__QUEUE=f"fs-load-{uuid.uuid4().hex[:10]}",
        FRAMESCRIBE_LOG_LEVEL="WARNING",
    )
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from worker.cli import main; main()", "scheduler", "--port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the API exited: {(tmp_path / 'api.log').read_text()[-3000:]}")
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, 60, "the API to answer", step=0.2)
        yield base, ids, clip
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def rest_load(base: str, ids: list[str], clip: Path, duration_s: float, threads: int = 4) -> dict[str, Any]:
    """``threads`` clients loop for ``duration_s`` (and at most 50 000 requests): 3 of 4 requests read a job,
    1 of 4 submits a dry run. Returns latency percentiles (ms) per endpoint and the errors seen."""
    lat: dict[str, list[float]] = {"get_job": [], "post_dry_run": []}
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s
    budget = [50_000]
    body = {"path": str(clip), "dry_run": True, "segment_seconds": 2, "fps": 2}

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as http:
            while time.monotonic() < deadline:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                kind = "post_dry_run" if rng.random() < 0.25 else "get_job"
                t0 = time.perf_counter()
                try:
                    if kind == "get_job":
                        job_id = rng.choice(ids)
                        resp = http.get(f"/v1/jobs/{job_id}")
                        ok = resp.status_code == 200 and resp.json()["id"] == job_id
                    else:
                        resp = http.post("/v1/jobs", json=body)
                        ok = resp.status_code == 200 and resp.json()["estimate"]["segments"] == 1
                    problem = None if ok else f"{kind}: {resp.status_code} {resp.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"{kind}: {type(exc).__name__}: {exc}"
                took = (time.perf_counter() - t0) * 1000
                with lock:
                    lat[kind].append(took)
                    if problem:
                        errors.append(problem)

    started = time.monotonic()
    pool = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(duration_s + 60)
    elapsed = time.monotonic() - started
    total = sum(len(v) for v in lat.values())
    fig: dict[str, Any] = {"duration_s": round(elapsed, 1), "clients": threads, "requests": total,
                           "errors": len(errors), "rps": round(total / elapsed, 1)}  # fmt: skip
    for kind, values in lat.items():
        fig[f"{kind}_n"] = len(values)
        fig[f"{kind}_p50_ms"] = round(percentile(values, 50), 1)
        fig[f"{kind}_p99_ms"] = round(percentile(values, 99), 1)
    fig["first_errors"] = errors[:5]
    return fig


def _rest(api_process: tuple[str, list[str], Path], duration_s: float) -> None:
    base, ids, clip = api_process
    fig = rest_load(base, ids, clip, duration_s)
    write_figures("rest_load", fig)
    assert fig["errors"] == 0, fig["first_errors"]
    assert fig["get_job_n"] > 0 and fig["post_dry_run_n"] > 0


def test_rest_load_20_s(api_process: tuple[str, list[str], Path]) -> None:
    _rest(api_process, 20)


@pytest.mark.slow
def test_rest_load_60_s(api_process: tuple[str, list[str], Path]) -> None:
    _rest(api_process, 60)
