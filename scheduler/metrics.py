"""Prometheus metrics for ``/metrics``: read from the store at scrape time, plus the API's own latencies.

Workers are separate processes, so job/segment/describer figures come from the result store (the
source of truth) with a few aggregate queries per scrape; queue depth comes from Redis.

==========================================  =====================================================
``framescribe_jobs{state}``                 jobs per state (gauge)
``framescribe_segments{state}``             segments per state (gauge)
``framescribe_segments_finished_total``     segments done or static (counter: ``rate()`` = segments/s)
``framescribe_queue_depth``                 messages waiting in the job queue
``framescribe_describer_calls_total``       describer attempts per describer (DashScope calls)
``framescribe_tokens_total{kind}``          input / output / video tokens
``framescribe_stage_latency_seconds``       histogram per stage: ``describe`` (from segment rows)
``framescribe_http_request_duration_seconds``  API latency per route and status
``framescribe_schedules{enabled}``          schedules
``framescribe_webhook_attempts_total{ok}``  webhook delivery attempts
==========================================  =====================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from worker.adapters.stores.schedules import ScheduleRow, WebhookDeliveryRow
from worker.adapters.stores.schema import JobRow, SegmentDbRow
from worker.adapters.stores.sql import SqlResultStore

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
HTTP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class StoreCollector(Collector):
    """Builds the job, segment, usage and latency metrics from the store on every scrape."""

    def __init__(self, store: SqlResultStore, queue_depth: Callable[[], int | None]) -> None:
        self.store = store
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        except Exception as exc:  # a scrape must not fail because the database hiccups
            log.warning("metrics: cannot read the store: %s", exc)

    def _collect(self) -> Iterator[Metric]:
        with self.store.session() as s:
            jobs = GaugeMetricFamily("framescribe_jobs", "Jobs per state.", labels=["state"])
            for state, n in s.execute(select(JobRow.state, func.count()).group_by(JobRow.state)):
                jobs.add_metric([state], n)
            yield jobs

            segs = GaugeMetricFamily("framescribe_segments", "Segments per state.", labels=["state"])
            finished = 0
            for state, n in s.execute(select(SegmentDbRow.state, func.count()).group_by(SegmentDbRow.state)):
                segs.add_metric([state], n)
                finished += n if state in ("done", "static") else 0
            yield segs
            yield CounterMetricFamily(
                "framescribe_segments_finished", "Segments described (done or static).", value=finished
            )

            calls = CounterMetricFamily("framescribe_describer_calls", "Describer attempts.", labels=["describer"])
            tokens = CounterMetricFamily("framescribe_tokens", "Tokens billed by the describer.", labels=["kind"])
            totals = [0, 0, 0]
            usage = select(
                SegmentDbRow.describer,
                func.coalesce(func.sum(SegmentDbRow.attempts), 0),
                func.coalesce(func.sum(SegmentDbRow.input_tokens), 0),
                func.coalesce(func.sum(SegmentDbRow.output_tokens), 0),
                func.coalesce(func.sum(SegmentDbRow.video_tokens), 0),
            ).group_by(SegmentDbRow.describer)
            for describer, attempts, inp, outp, video in s.execute(usage):
                calls.add_metric([describer or "none"], attempts)
                totals = [totals[0] + inp, totals[1] + outp, totals[2] + video]
            for kind, value in zip(("input", "output", "video"), totals, strict=True):
                tokens.add_metric([kind], value)
            yield calls
            yield tokens
            yield self._describe_latency(s)

            sched = GaugeMetricFamily("framescribe_schedules", "Schedules.", labels=["enabled"])
            for enabled, n in s.execute(select(ScheduleRow.enabled, func.count()).group_by(ScheduleRow.enabled)):
                sched.add_metric(["true" if enabled else "false"], n)
            yield sched

            hooks = CounterMetricFamily("framescribe_webhook_attempts", "Webhook delivery attempts.", labels=["ok"])
            for ok, n in s.execute(select(WebhookDeliveryRow.ok, func.count()).group_by(WebhookDeliveryRow.ok)):
                hooks.add_metric(["true" if ok else "false"], n)
            yield hooks

        depth = self.queue_depth()
        if depth is not None:
            yield GaugeMetricFamily("framescribe_queue_depth", "Messages waiting in the job queue.", value=depth)

    def _describe_latency(self, s: Any) -> Metric:
        ms = SegmentDbRow.latency_ms
        done = SegmentDbRow.state.in_(("done", "static"))
        cols = [func.sum(case((ms <= b * 1000, 1), else_=0)) for b in LATENCY_BUCKETS_S]
        row = s.execute(select(func.count(), func.coalesce(func.sum(ms), 0), *cols).where(done)).one()
        count, total_ms, cumulative = int(row[0]), int(row[1]), [int(v or 0) for v in row[2:]]
        hist = HistogramMetricFamily(
            "framescribe_stage_latency_seconds", "Latency per pipeline stage.", labels=["stage"]
        )
        buckets = [(str(b), c) for b, c in zip(LATENCY_BUCKETS_S, cumulative, strict=True)] + [("+Inf", count)]
        hist.add_metric(["describe"], buckets, total_ms / 1000)
        return hist


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def http_labels(method: str, route: Any, status: int) -> tuple[str, str, str]:
    """Bounded label values: a known method or ``other``, the route template (never the raw path) or
    ``unmatched``, the status class for anything outside 100-599."""
    path = getattr(route, "path", None)
    return (
        method if method in HTTP_METHODS else "other",
        path if isinstance(path, str) else "unmatched",
        str(status) if 100 <= status <= 599 else "other",
    )


def build_registry(store: SqlResultStore, queue_depth: Callable[[], int | None]) -> tuple[CollectorRegistry, Histogram]:
    """A registry per app (tests run several apps in one process) and the API latency histogram."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, queue_depth))
    http = Histogram(
        "framescribe_http_request_duration_seconds",
        "API request latency.",
        ["method", "route", "status"],
        buckets=HTTP_BUCKETS_S,
        registry=registry,
    )
    return registry, http
