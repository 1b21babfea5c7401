"""Goal 6: jobs through Celery — 2 real ``celery worker`` processes, Redis, the fake DashScope at zero latency.

Segments/s and jobs/min come from the wall time of N short jobs submitted at once. The overhead per segment
is the worker-seconds Celery spends beyond the same jobs run in process (``run_inline``, one call at a time):
``(workers x wall - inline) / segments``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from benchmarks.common import PYTHON, REPO, Goal, Measure, fmt_s
from benchmarks.fake import fake_dashscope
from worker.config import Settings, load_settings
from worker.options import JobOptions
from worker.service import pipeline

TERMINAL = ("done", "partial", "failed", "cancelled")
JOB_OPTIONS = {"segment_seconds": 2, "fps": 2}


def _redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def available() -> str | None:
    """Why goal 6 cannot run here (None when it can)."""
    if importlib.util.find_spec("worker.celery_app") is None:
        return "worker/celery_app.py is not there yet"
    if not _redis_answers():
        return "Redis is not answering on 127.0.0.1:6379"
    return None


def _settings(work: Path, broker_db: int, base_url: str, queue: str, api_key: str) -> Settings:
    return load_settings(
        broker_url=f"redis://127.0.0.1:6379/{broker_db}",
        database_url=f"sqlite:///{(work / 'store.db').resolve()}",
        data_dir=work / "data",
        describer={"kind": "dashscope", "concurrency": 1, "continuity": False},
        sampling={"cache_descriptions": False},
        worker={"queue": queue},
        dashscope={"api_key": api_key, "base_url": base_url, "max_attempts": 1},
    )


def _worker_env(settings: Settings, api_key: str, base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMESCRIBE_") and k != "DASHSCOPE_API_KEY"}
    env.update(
        FRAMESCRIBE_BROKER_URL=settings.broker_url,
        FRAMESCRIBE_DATABASE_URL=settings.resolved_database_url,
        FRAMESCRIBE_DATA_DIR=str(settings.data_dir),
        FRAMESCRIBE_DESCRIBER__KIND="dashscope",
        FRAMESCRIBE_DESCRIBER__CONCURRENCY="1",
        FRAMESCRIBE_SAMPLING__CACHE_DESCRIPTIONS="false",
        FRAMESCRIBE_WORKER__QUEUE=settings.worker.queue,
        FRAMESCRIBE_DASHSCOPE__API_KEY=api_key,
        FRAMESCRIBE_DASHSCOPE__BASE_URL=base_url,
        FRAMESCRIBE_DASHSCOPE__MAX_ATTEMPTS="1",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    return env


class _Workers:
    """``workers`` celery worker processes (-c 1 each), each in its own session so it can be stopped whole."""

    def __init__(self, n: int, env: dict[str, str], queue: str, logs: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = [logs / f"worker{i}.log" for i in range(n)]
        for i, log_path in enumerate(self.logs):
            with log_path.open("wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [
                            PYTHON,
                            "-m",
                            "celery",
                            "-A",
                            "worker.celery_app",
                            "worker",
                            "-P",
                            "prefork",
                            "-c",
                            "1",
                            "-Q",
                            queue,
                            "-n",
                            f"bench{i}-{queue}@%h",
                            "--loglevel=INFO",
                            "--without-gossip",
                            "--without-mingle",
                            "--without-heartbeat",
                        ],
                        cwd=REPO,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, log in zip(self.procs, self.logs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"a celery worker exited: {log.read_text(errors='replace')[-2000:]}")
            if all(" ready." in log.read_text(errors="replace") for log in self.logs):
                return
            time.sleep(0.1)
        raise RuntimeError("celery workers did not become ready")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the session this benchmark created
                proc.wait(5)


def _wait_all(store: object, job_ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(job_ids)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            job = store.get_job(job_id)  # type: ignore[attr-defined]
            if job.state in TERMINAL and job.summary is not None:
                pending.discard(job_id)
        time.sleep(0.05)
    if pending:
        raise RuntimeError(f"{len(pending)} job(s) did not finish within {timeout:.0f}s")


def _clear(broker_url: str, *patterns: str) -> None:
    import redis

    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(broker_url, socket_timeout=2)
        for pattern in patterns:
            keys = list(client.scan_iter(match=pattern))
            if keys:
                client.delete(*keys)


def goal6(
    clips: list[Path], work: Path, broker_db: int, workers: int = 2, reps: int = 3, timeout: float = 300
) -> tuple[Goal, list[Measure]]:
    why = available()
    title = f"orchestration through Celery, {workers} workers, {len(clips)} short jobs"
    if why:
        return Goal("G6", title, 1.0, None, "-", "-", why, measured=False), []
    from worker.adapters.queue import CeleryEnqueuer
    from worker.adapters.stores.sql import SqlResultStore

    queue = f"fs-bench-{uuid.uuid4().hex[:12]}"
    api_key = f"sk-bench-{uuid.uuid4().hex[:12]}"
    work.mkdir(parents=True, exist_ok=True)
    celery = Measure(f"celery: {len(clips)} jobs submitted at once, {workers} workers")
    inline = Measure(f"in process: the same {len(clips)} jobs one after another")
    segments, states = 0, set()

    def submit_all(store: SqlResultStore, settings: Settings, batch: list[Path]) -> list[str]:
        ids = []
        for clip in batch:
            job, _ = store.create_job(str(clip.resolve()), clip.name, dict(JOB_OPTIONS))
            CeleryEnqueuer(settings).enqueue_job(job.id)
            ids.append(job.id)
        return ids

    with fake_dashscope(0.0) as url:
        settings = _settings(work, broker_db, url, queue, api_key)
        store = SqlResultStore(settings.resolved_database_url)
        group = _Workers(workers, _worker_env(settings, api_key, url), queue, work)
        try:
            in_process = _InProcess(work / "inline", settings, clips[0])  # warmed up, as the workers are
            group.wait_ready()
            _wait_all(store, submit_all(store, settings, clips[:1]), timeout)  # warm-up outside the clock
            for _ in range(reps):  # interleaved with the in-process runs
                started = time.perf_counter()
                ids = submit_all(store, settings, clips)
                _wait_all(store, ids, timeout)
                celery.seconds.append(time.perf_counter() - started)
                segments = sum(store.get_job(i).segment_count for i in ids)
                states |= {store.get_job(i).state for i in ids}
                inline.seconds.append(in_process.run(clips))
        finally:
            group.stop()
            store.close()
            _clear(settings.broker_url, f"*{queue}*", "framescribe:rl:*")
    wall = celery.median
    per_segment_ms = (workers * wall - inline.median) / max(1, segments) * 1000
    celery.note = f"{segments} segments per run, states {sorted(states)}"
    goal = Goal(
        "G6",
        title,
        1.0,
        per_segment_ms / 50,
        "50 ms overhead per segment (the target)",
        f"{per_segment_ms:.0f} ms per segment",
        f"{segments / wall:.1f} segments/s, {len(clips) / wall * 60:.0f} jobs/min, wall {fmt_s(wall)} "
        f"vs in-process {fmt_s(inline.median)}; overhead = ({workers} x wall - in-process) / segments",
    )
    return goal, [celery, inline]


class _InProcess:
    """The same jobs through ``run_inline`` in this process (its own store), warmed up by one job."""

    def __init__(self, data: Path, celery_settings: Settings, warm_clip: Path) -> None:
        from worker.bootstrap import build_ports

        data.mkdir(parents=True, exist_ok=True)
        settings = celery_settings.model_copy(
            update={"data_dir": data, "database_url": f"sqlite:///{(data / 's.db').resolve()}"}
        )
        self.ports = build_ports(settings)
        self.run([warm_clip])  # imports, the SDK, connections: as the workers were warmed up

    def run(self, clips: list[Path]) -> float:
        started = time.perf_counter()
        for clip in clips:
            job, _ = self.ports.store.create_job(str(clip.resolve()), clip.name, JobOptions.parse(JOB_OPTIONS).stored())
            pipeline.run_inline(self.ports, job.id)
        return time.perf_counter() - started
