"""The recovery loop: every ``worker.reaper_interval_s`` one worker (a Redis lock) re-queues work nobody
holds, so that no job is left behind after a fault (issue 16).

* a running segment whose lease expired (its worker died, hung, or lost Redis): re-sent at once, urgent,
  unless its message is back in the queue already (then it is moved ahead of new work); after
  ``worker.max_segment_attempts`` claims it is failed with the reason;
* a pending segment or an unplanned job with no message anywhere in the broker for ``requeue_grace_s``
  (Redis restarted without persistence, a publish lost): re-sent; one merely waiting is left alone;
* a job with every segment ended and no summary, or whose summary lease expired: a finisher is sent;
* a webhook due in the outbox (not delivered yet, its sender died): sent again, same delivery id.

Each worker runs it in a thread of its main process (``RecoveryStep`` in celery_app); the
``framescribe.reap_stale`` task (beat) runs the same ``sweep``."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import redis

from worker.adapters.queue import broker_scan
from worker.adapters.queue.broker_scan import URGENT
from worker.adapters.queue.celery import CeleryEnqueuer
from worker.adapters.stores.leases import Orphan
from worker.adapters.stores.sql import SqlResultStore
from worker.celery_app import PLAN_JOB, RUN_SEGMENT, SEND_WEBHOOK
from worker.config import Settings
from worker.errors import NotFound

log = logging.getLogger(__name__)
LOCK = "framescribe:recovery:"
PLANNING = "framescribe:planning:"  # a job being planned (a lease renewed by plan_job)
SENT = "framescribe:resent:"


def gave_up(attempts: int) -> str:
    return (
        f"gave up after {attempts} attempts: the worker running this segment stopped each time (crash, kill, "
        "out of memory or lost connection); see the worker logs, then retry the job"
    )


def over_attempts(settings: Settings, store: SqlResultStore, job_id: str, index: int) -> bool:
    """Fail a live segment already claimed ``worker.max_segment_attempts`` times (each time its worker
    stopped) with the reason, instead of trying it forever. True when it did."""
    try:
        row = store.segment(job_id, index)
    except NotFound:
        return False
    if row.state not in ("pending", "running") or row.attempts < settings.worker.max_segment_attempts:
        return False
    return store.fail_segment(job_id, index, gave_up(row.attempts))


def sweep(settings: Settings, store: SqlResultStore, client: Any, enqueuer: CeleryEnqueuer) -> dict[str, int]:
    """One pass; returns what it did. Only one worker sweeps a queue per interval (a Redis lock)."""
    w = settings.worker
    counts: Counter[str] = Counter()
    if not client.set(LOCK + w.queue, 1, nx=True, px=max(500, int(w.reaper_interval_s * 900))):
        return dict(counts)
    found = store.orphans(w.lease_ttl_s, w.requeue_grace_s)
    if not found:
        return dict(counts)
    held = broker_scan.scan(client, w.queue, fresh_s=w.lease_ttl_s)
    for o in found:
        counts[_one(o, settings, store, client, enqueuer, held)] += 1
    counts.pop("", None)
    if counts:
        log.warning("recovery: %s", dict(counts))
    return dict(counts)


def _one(
    o: Orphan, settings: Settings, store: SqlResultStore, client: Any, enq: CeleryEnqueuer, held: broker_scan.Held
) -> str:
    w = settings.worker
    if o.kind == "segment":
        key = (RUN_SEGMENT, o.job_id, o.index)
        if o.state == "running" and o.attempts >= w.max_segment_attempts:
            store.fail_segment(o.job_id, o.index, gave_up(o.attempts))
            _finisher(o.job_id, client, enq, w.lease_ttl_s)
            return "segments_failed"
        if key in held.waiting:
            if broker_scan.promote(client, held.waiting[key]):
                enq.send(RUN_SEGMENT, [o.job_id, o.index], priority=URGENT)
                return "segments_promoted"
            return ""
        if held.holds(key):
            return ""
        if client.set(f"{SENT}{o.job_id}:{o.index}", 1, nx=True, px=int(w.reaper_interval_s * 1000)):
            enq.send(RUN_SEGMENT, [o.job_id, o.index], priority=URGENT)
            broker_scan.drop_stale(client, held.stale_tags.get(key, []))
            return "segments_resent"
        return ""
    if o.kind == "plan":
        key = (PLAN_JOB, o.job_id, -1)
        if held.holds(key) or client.exists(PLANNING + o.job_id):
            return ""
        enq.send(PLAN_JOB, [o.job_id], priority=URGENT)
        broker_scan.drop_stale(client, held.stale_tags.get(key, []))
        return "plans_resent"
    if o.kind == "finish":
        return "finishers_sent" if _finisher(o.job_id, client, enq, w.lease_ttl_s) else ""
    if o.kind == "webhook":
        key = (SEND_WEBHOOK, o.job_id, -1)
        if held.holds(key) or not client.set(f"{SENT}hook:{o.job_id}", 1, nx=True, px=int(w.lease_ttl_s * 1000)):
            return ""
        enq.send(SEND_WEBHOOK, [o.job_id], priority=URGENT)
        return "webhooks_resent"
    return ""


def _finisher(job_id: str, client: Any, enq: CeleryEnqueuer, lease_s: float) -> bool:
    """A run_segment of segment 0: its row is terminal, so the task only tries to finish the job (in a pool
    child, where the summary's model call belongs). At most one per lease period."""
    if not client.set(f"{SENT}finish:{job_id}", 1, nx=True, px=int(lease_s * 1000)):
        return False
    enq.send(RUN_SEGMENT, [job_id, 0], priority=URGENT)
    return True


class Loop:
    """The recovery loop in a daemon thread (a worker's main process). Its own store, Redis client and
    producer: nothing shared with pool children forked later. Errors (Redis or the store down) are logged
    and the loop goes on."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="framescribe-recovery", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def _run(self) -> None:
        s = self.settings
        store = SqlResultStore(s.resolved_database_url, auto_migrate=False)
        client = redis.Redis.from_url(s.broker_url, socket_timeout=5, socket_connect_timeout=5)
        enq = CeleryEnqueuer.private(s, name="framescribe-recovery")
        failures = 0
        try:
            while not self.stop_event.wait(s.worker.reaper_interval_s):
                try:
                    sweep(s, store, client, enq)
                    failures = 0
                except Exception as exc:  # Redis or the store is down: try again next interval
                    failures += 1
                    if failures == 1 or failures % 12 == 0:
                        log.warning("recovery loop: %s: %s (will retry)", type(exc).__name__, exc)
        finally:
            enq.close()
            store.close()
            client.close()
