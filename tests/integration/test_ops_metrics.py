"""The operator metrics against a real SQLite store and a private redis-server: stuck jobs, describer
errors, tokens per model, worker heartbeats, beat; and every metric ops/ names is exported."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from sqlalchemy import update

from scheduler.metrics import build_registry
from scheduler.ops_metrics import OpsCollector
from tests.integration.celery_fixtures import RedisServer
from tests.unit.test_ops_kit import exported_names, referenced_names
from worker.adapters.stores.schema import JobRow, SegmentDbRow
from worker.adapters.stores.sql import SqlResultStore
from worker.config import load_settings
from worker.heartbeat import CONSUMED_KEY, WORKER_KEY, redis_client
from worker.stuck import stuck_jobs

pytestmark = pytest.mark.services


def _segment(job_id: str, index: int, state: str, attempts: int, tokens: int) -> SegmentDbRow:
    old = datetime.now(UTC) - timedelta(hours=2)
    return SegmentDbRow(
        job_id=job_id, index=index, start_ms=index * 10_000, end_ms=(index + 1) * 10_000, fps="1", kind="describe",
        planned_frames=10, state=state, describer="dashscope", model="qwen-vl-max-latest", input_tokens=tokens,
        output_tokens=tokens // 10, video_tokens=tokens, attempts=attempts, frame_count=10, updated_at=old,
    )  # fmt: skip


def test_ops_metrics_and_every_referenced_name(tmp_path: Path, redis_server: RedisServer) -> None:
    settings = load_settings(data_dir=tmp_path / "data", broker_url=redis_server.url)
    store = SqlResultStore(settings.resolved_database_url)
    stuck, _ = store.create_job("/v/a.mp4", "a.mp4", {})
    fresh, _ = store.create_job("/v/b.mp4", "b.mp4", {})
    old = datetime.now(UTC) - timedelta(hours=2)
    with store.session() as s, s.begin():
        s.execute(update(JobRow).where(JobRow.id == stuck.id).values(state="running", updated_at=old))
        s.add_all([_segment(stuck.id, 0, "done", 3, 1000), _segment(stuck.id, 1, "failed", 5, 0),
                   _segment(stuck.id, 2, "running", 1, 0)])  # fmt: skip
    client = redis_client(redis_server.url)
    client.set(WORKER_KEY + "w1@host", json.dumps({"hostname": "w1@host", "pid": 1, "queues": ["framescribe"],
                                                    "ts": time.time() - 3}), ex=30)  # fmt: skip
    client.set(CONSUMED_KEY + "framescribe", repr(time.time() - 42))
    client.set("redbeat:framescribe::lock", "token", px=20_000)

    assert [j.id for j in stuck_jobs(store, 1800)] == [stuck.id], "the idle job only, not the fresh one"
    assert fresh.id not in [j.id for j in stuck_jobs(store, 1800)]
    registry, _ = build_registry(store, lambda: int(client.llen("framescribe")))
    registry.register(OpsCollector(store, settings))
    text = generate_latest(registry).decode()
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line and not line.startswith("#")}  # fmt: skip
    assert values["framescribe_jobs_stuck"] == 1
    # errors: the done segment needed 3 attempts (2 failed), the failed one failed all 5
    assert values['framescribe_describer_errors_total{describer="dashscope"}'] == 7
    assert values['framescribe_model_tokens_total{kind="input",model="qwen-vl-max-latest"}'] == 1000
    assert values['framescribe_workers{queue="framescribe"}'] == 1
    assert 2 <= values['framescribe_worker_heartbeat_age_seconds{worker="w1@host"}'] < 30
    assert 40 <= values["framescribe_queue_last_consumed_age_seconds"] < 100
    assert values["framescribe_beat_up"] == 1
    missing = referenced_names() - exported_names(text)
    assert not missing, f"ops/ uses metrics /metrics does not export: {sorted(missing)}"

    client.delete(WORKER_KEY + "w1@host", "redbeat:framescribe::lock")
    text = generate_latest(registry).decode()
    assert 'framescribe_workers{queue="framescribe"} 0.0' in text and "framescribe_beat_up 0.0" in text
    client.close()
    store.close()
