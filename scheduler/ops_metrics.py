"""Operator metrics on ``/metrics`` beside ``scheduler/metrics.py``: stuck work, describer errors, tokens per
model (spend), worker heartbeats and beat. The alert rules and the Grafana dashboard in ``ops/`` use them.

==================================================  ===========================================================
``framescribe_jobs_stuck``                          live jobs idle past their deadline (``jobs list --stuck``)
``framescribe_stuck_deadline_seconds``              that deadline (``worker.task_time_limit_s``)
``framescribe_describer_errors_total{describer}``   failed describer attempts (retried or final)
``framescribe_model_tokens_total{model,kind}``      tokens per model: input / output / video (spend per hour)
``framescribe_workers{queue}``                      live workers per queue (heartbeat keys in Redis)
``framescribe_worker_heartbeat_age_seconds{worker}``  seconds since each live worker's last heartbeat
``framescribe_queue_last_consumed_age_seconds``     seconds since a worker last took a task from the job queue
``framescribe_beat_up``                             1 while a beat holds the RedBeat lock
==================================================  ===========================================================
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from worker.adapters.stores.schema import SegmentDbRow
from worker.config import Settings
from worker.heartbeat import beats, last_consumed, redis_client
from worker.stuck import count_stuck

log = logging.getLogger(__name__)


class OpsCollector(Collector):
    """Read at scrape time from the store and the broker's Redis; a part that fails is left out."""

    def __init__(self, store: Any, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._store_metrics()
        except Exception as exc:
            log.warning("ops metrics: cannot read the store: %s", exc)
        try:
            yield from self._redis_metrics()
        except Exception as exc:
            log.warning("ops metrics: cannot read Redis: %s", exc)

    def _store_metrics(self) -> Iterator[Metric]:
        deadline = float(self.settings.worker.task_time_limit_s)
        yield GaugeMetricFamily("framescribe_jobs_stuck", "Live jobs idle past their deadline.",
                                value=count_stuck(self.store, deadline))  # fmt: skip
        yield GaugeMetricFamily("framescribe_stuck_deadline_seconds", "Idle time after which a job is stuck.",
                                value=deadline)  # fmt: skip
        failed_attempts = func.coalesce(
            func.sum(
                case(
                    (SegmentDbRow.state == "failed", SegmentDbRow.attempts),
                    (SegmentDbRow.attempts > 0, SegmentDbRow.attempts - 1),
                    else_=0,
                )
            ),
            0,
        )
        errors = CounterMetricFamily(
            "framescribe_describer_errors", "Failed describer attempts (retried or final).", labels=["describer"]
        )
        tokens = CounterMetricFamily("framescribe_model_tokens", "Tokens billed per model.", labels=["model", "kind"])
        with self.store.session() as s:
            by_describer = select(SegmentDbRow.describer, failed_attempts).group_by(SegmentDbRow.describer)
            for describer, n in s.execute(by_describer):
                errors.add_metric([describer or "none"], int(n))
            per_model = (
                select(
                    SegmentDbRow.model,
                    func.coalesce(func.sum(SegmentDbRow.input_tokens), 0),
                    func.coalesce(func.sum(SegmentDbRow.output_tokens), 0),
                    func.coalesce(func.sum(SegmentDbRow.video_tokens), 0),
                )
                .where(SegmentDbRow.model.is_not(None))
                .group_by(SegmentDbRow.model)
            )
            for model, inp, outp, video in s.execute(per_model):
                for kind, value in (("input", inp), ("output", outp), ("video", video)):
                    tokens.add_metric([str(model), kind], int(value))
        yield errors
        yield tokens

    def _redis_metrics(self) -> Iterator[Metric]:
        from scheduler.schedules import redbeat_prefix

        queue = self.settings.worker.queue
        client = redis_client(self.settings.broker_url)
        try:
            live = beats(client)
            consumed = last_consumed(client, queue)
            beat_up = client.exists(redbeat_prefix(self.settings) + ":lock")
        finally:
            client.close()
        workers = GaugeMetricFamily("framescribe_workers", "Live workers per queue (heartbeats).", labels=["queue"])
        per_queue: dict[str, int] = {queue: 0}
        for b in live:
            for q in b.queues:
                per_queue[q] = per_queue.get(q, 0) + 1
        for q, n in sorted(per_queue.items()):
            workers.add_metric([q], n)
        yield workers
        age = GaugeMetricFamily(
            "framescribe_worker_heartbeat_age_seconds", "Seconds since a live worker's heartbeat.", labels=["worker"]
        )
        for b in live:
            age.add_metric([b.hostname], round(b.age_s, 3))
        yield age
        if consumed is not None:
            yield GaugeMetricFamily(
                "framescribe_queue_last_consumed_age_seconds",
                "Seconds since a worker last took a task from the job queue.",
                value=max(0.0, time.time() - consumed),
            )
        yield GaugeMetricFamily("framescribe_beat_up", "1 while a beat holds the RedBeat lock.", value=int(beat_up))
