"""Webhooks: the finished job's state POSTed to its URL, signed (``worker.core.signing``), retried with
backoff on 5xx/408/429/network errors, every attempt recorded in ``webhook_deliveries``.

The Celery task ``framescribe.send_webhook`` (worker/tasks.py) and the in-process sender
(``deliver_until_done``) both call ``deliver``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass

import httpx

from worker.adapters.stores.schedules import ScheduleStore
from worker.adapters.stores.sql import SqlResultStore
from worker.config import Settings
from worker.core import signing
from worker.errors import NotFound, SourceError
from worker.service.schedules import store_of
from worker.sources import pinned

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 10.0
WEBHOOK_HOLD_S = 2 * WEBHOOK_TIMEOUT_S
WEBHOOK_BACKOFF_BASE_S = 5.0
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


def job_links(job_id: str) -> dict[str, str]:
    base = f"/v1/jobs/{job_id}"
    return {"self": base, "segments": f"{base}/segments", "summary": f"{base}/summary"}


def webhook_payload(store: SqlResultStore, job_id: str, delivery_id: str) -> bytes:
    job = store.get_job(job_id)
    summary = job.summary or {}
    body = {
        "event": "job.finished",
        "delivery_id": delivery_id,
        "job": {
            "id": job.id,
            "state": job.state,
            "source_name": job.source_name,
            "error": job.error,
            "schedule_id": job.schedule_id,
            "segment_count": job.segment_count,
            "progress": store.counts(job_id),
            "usage": store.usage(job_id),
            "summary": summary.get("text"),
            "created_at": job.created_at.isoformat(),
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        },
        "links": job_links(job_id),
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class Attempt:
    status_code: int | None
    error: str | None
    duration_ms: int
    retryable: bool

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post_webhook(url: str, body: bytes, headers: dict[str, str], allow: list[str]) -> Attempt:
    """One POST: SSRF rules first, no redirects followed, a bounded wait."""
    started = time.monotonic()

    def took() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        pin = pinned(url, allow)  # sent to the checked address only (no DNS rebinding)
    except SourceError as exc:
        return Attempt(None, f"refused: {exc.message}", took(), retryable=False)
    try:
        with httpx.Client(follow_redirects=False, timeout=WEBHOOK_TIMEOUT_S, trust_env=False) as client:
            resp = client.post(pin.url, content=body, headers={**headers, **pin.headers}, extensions=pin.extensions)
    except httpx.HTTPError as exc:
        return Attempt(None, f"{type(exc).__name__}: {exc}"[:500], took(), retryable=True)
    if 200 <= resp.status_code < 300:
        return Attempt(resp.status_code, None, took(), retryable=False)
    if 300 <= resp.status_code < 400:
        return Attempt(resp.status_code, "redirects are not followed for webhooks", took(), retryable=False)
    return Attempt(resp.status_code, f"HTTP {resp.status_code}", took(), resp.status_code in RETRYABLE_STATUS)


def webhook_delay(attempt: int, settings: Settings) -> float:
    """Backoff before attempt ``attempt + 1``: 5, 20, 80 ... s with jitter, capped by retry_max_delay_s."""
    cap = float(settings.worker.retry_max_delay_s)
    return float(min(cap, WEBHOOK_BACKOFF_BASE_S * 4 ** (attempt - 1)) * random.uniform(0.5, 1.0))


def deliver(settings: Settings, job_id: str, delivery_id: str, attempt: int) -> Attempt | None:
    """Sign, send and record one attempt. None when there is nothing to send."""
    store = store_of(settings)
    try:
        job = store.get_job(job_id)
    except NotFound:
        log.info("job %s was deleted; no webhook", job_id)
        return None
    if not job.webhook_url:
        return None
    schedules = ScheduleStore(store.engine)
    secret = settings.scheduler.webhook_secret
    if secret is None:
        result = Attempt(None, "no webhook secret configured (FRAMESCRIBE_SCHEDULER__WEBHOOK_SECRET)", 0, False)
    else:
        body = webhook_payload(store, job_id, delivery_id)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "framescribe-webhook/1",
            signing.EVENT_HEADER: "job.finished",
            signing.DELIVERY_HEADER: delivery_id,
            "X-Framescribe-Attempt": str(attempt),
            **signing.sign(secret.get_secret_value(), int(time.time()), body),
        }
        result = post_webhook(job.webhook_url, body, headers, list(settings.scheduler.allow_private_urls))
    schedules.record_delivery(
        delivery_id, job_id, attempt, job.webhook_url,
        status_code=result.status_code, ok=result.ok, error=result.error, duration_ms=result.duration_ms,
    )  # fmt: skip
    return result


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    retry_in_s: float | None = None  # another attempt is due after this long (same delivery id)


def send_from_outbox(settings: Settings, job_id: str) -> Outcome:
    """One attempt at the job's outbox row (written with its summary): claimed first, so two senders never
    post the same attempt; the same delivery id on every attempt. A sender that dies leaves the row due
    again once its hold passes, and the recovery loop sends it: at least once, never lost."""
    store = store_of(settings)
    # held for about one attempt (connect + send + read under WEBHOOK_TIMEOUT_S each): a sender killed
    # mid-attempt delays the webhook by this much, not by minutes (a slower attempt may overlap a re-send:
    # at least once, the same delivery id)
    claim = store.claim_webhook(job_id, hold_s=WEBHOOK_HOLD_S)
    if claim is None:
        return Outcome(False)
    delivery_id, attempt = claim
    result = deliver(settings, job_id, delivery_id, attempt)
    if result is None:
        store.webhook_done(delivery_id, "given_up", "nothing to send (job deleted or no URL)")
        return Outcome(False)
    if result.ok:
        store.webhook_done(delivery_id, "sent")
        return Outcome(True)
    if not result.retryable or attempt >= settings.scheduler.webhook_max_attempts:
        log.warning("job %s: webhook not delivered after %d attempt(s): %s", job_id, attempt, result.error)
        store.webhook_done(delivery_id, "given_up", result.error)
        return Outcome(False)
    delay = webhook_delay(attempt, settings)
    store.webhook_done(delivery_id, "pending", result.error, retry_in_s=delay)
    log.info("job %s: webhook attempt %d failed (%s); retrying in %.1f s", job_id, attempt, result.error, delay)
    return Outcome(False, delay)


def deliver_until_done(settings: Settings, job_id: str) -> bool:
    """The in-process webhook sender: the outbox's attempts with the same backoff as ``send_webhook``, one
    delivery id. Returns True when delivered."""
    while True:
        outcome = send_from_outbox(settings, job_id)
        if outcome.retry_in_s is None:
            return outcome.delivered
        time.sleep(outcome.retry_in_s + 0.05)
