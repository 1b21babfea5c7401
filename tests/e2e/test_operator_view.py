"""The operator's view of real workers: JSON log lines with job and segment ids from a Celery worker,
heartbeats, and Flower run against the Celery app (``celery -A worker.celery_app flower``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.integration.celery_fixtures import RedisServer, Worker, free_port, wait_for
from worker.heartbeat import WORKER_KEY

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.services


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[dict[str, str], Worker, RedisServer]]:
    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    queue = f"ops-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMESCRIBE_", "DASHSCOPE_"))}
    env.update({"FRAMESCRIBE_DATA_DIR": str(tmp_path / "data"), "FRAMESCRIBE_BROKER_URL": server.url,
                "FRAMESCRIBE_WORKER__QUEUE": queue, "FRAMESCRIBE_LOGGING__FORMAT": "json"})  # fmt: skip
    worker = Worker(f"ops-{queue}", env, tmp_path / "worker.log", queue)
    worker.start()
    try:
        wait_for(lambda: '"msg": "' in worker.log() and " ready." in worker.log(), 90, "the worker", step=0.2)
        yield env, worker, server
    finally:
        worker.stop()
        server.stop()


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=180)  # fmt: skip


def test_worker_json_logs_heartbeat_and_flower(cluster: tuple[dict[str, str], Worker, RedisServer]) -> None:
    env, worker, server = cluster
    queue = env["FRAMESCRIBE_WORKER__QUEUE"]
    client = redis.Redis.from_url(server.url)
    beat = json.loads(wait_for(lambda: client.get(WORKER_KEY + worker.name + "@" + os.uname().nodename), 30,
                               "the worker's heartbeat"))  # fmt: skip
    assert beat["queues"] == [queue] and client.ttl(WORKER_KEY + beat["hostname"]) > 0

    submitted = cli("submit", str(ROOT / "examples" / "street.mp4"), env=env)
    assert submitted.returncode == 0 and "no worker" not in submitted.stderr, submitted.stderr
    job_id = submitted.stdout.strip()
    followed = cli("status", job_id, "--follow", "--interval", "0.3", env=env)
    assert followed.returncode == 0 and "done: 2/2" in followed.stdout, followed.stdout + followed.stderr
    assert float(client.get(f"framescribe:consumed:{queue}") or 0) > 0

    docs = [json.loads(ln) for ln in worker.log().splitlines() if ln.startswith("{")]
    assert docs, worker.log()[-2000:]
    non_json = [ln for ln in worker.log().splitlines() if ln.strip() and not ln.startswith("{")]
    # celery's start-up banner is printed, not logged; every log record is one JSON object
    assert all(not ln.startswith(("[20", "INFO", "WARNING", "ERROR")) for ln in non_json), non_json[:5]
    in_job = [d for d in docs if d["job_id"] == job_id]
    segments = {d["segment"] for d in in_job if d["segment"] is not None}
    assert segments == {0, 1}, in_job
    succeeded = [d for d in docs if "succeeded" in d["msg"] and "run_segment" in d["msg"]]
    assert succeeded and all(d["job_id"] == job_id and d["segment"] in (0, 1) for d in succeeded), succeeded
    client.close()
    _flower_sees(env, queue)


def _flower_sees(env: dict[str, str], queue: str) -> None:
    pytest.importorskip("flower")
    port = free_port()
    flower_env = {**env, "FLOWER_UNAUTHENTICATED_API": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.celery_app", "flower", f"--port={port}", "--address=127.0.0.1"],
        cwd=ROOT, env=flower_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:

        def workers() -> Any:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/api/workers", params={"refresh": "1"}, timeout=10)
            except httpx.HTTPError:
                return None
            return resp.json() if resp.status_code == 200 and resp.json() else None

        found = wait_for(workers, 90, "Flower to list the worker", step=0.5)
        info = next(iter(found.values()))
        assert [q["name"] for q in info["active_queues"]] == [queue], info.get("active_queues")
        health = httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=10)
        assert health.status_code == 200 and health.text == "OK"
    finally:
        proc.terminate()
        proc.wait(20)
