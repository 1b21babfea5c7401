"""Service tasks: ``framescribe.fire_schedule`` (a schedule's run) and ``framescribe.send_webhook``.

``fire_schedule(schedule_id)`` makes one job per new file of a watched folder (new = path + size +
mtime not seen by this schedule; the ``schedule_seen_files`` unique constraint makes a double fire
harmless) or one job per run of a URL schedule (keyed by the task id, so a redelivered message makes
no second job). ``send_webhook(job_id)`` POSTs the job's final state, signed (``worker.core.signing``),
retried with backoff on 5xx/408/429/network errors, every attempt recorded in ``webhook_deliveries``.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, cast

import httpx
from celery import Task

from worker.adapters.stores.schedules import Schedule, ScheduleStore
from worker.adapters.stores.sql import SqlResultStore
from worker.celery_app import FIRE_SCHEDULE, SEND_WEBHOOK, app
from worker.config import Settings, get_settings
from worker.core import signing
from worker.core.newfiles import FileFacts, check_glob, new_files
from worker.errors import FramescribeError, NotFound, SourceError
from worker.options import JobOptions
from worker.sources import check_url, resolve_local

log = logging.getLogger(__name__)

MAX_SCAN = 100_000  # entries one run may look at; a bigger tree is scanned partially (and logged)
SCAN_CHUNK = 500
WEBHOOK_TIMEOUT_S = 10.0
WEBHOOK_BACKOFF_BASE_S = 5.0
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


def _store(settings: Settings) -> SqlResultStore:
    from worker.bootstrap import store_for

    return store_for(settings.resolved_database_url)


# -- schedules --------------------------------------------------------------------------------
def resolve_folder(folder: str, roots: list[Path]) -> Path:
    """The real path of a watched folder, refused when it is (now) outside the allowed roots."""
    if not roots:
        raise SourceError("folder sources are disabled: FRAMESCRIBE_ALLOWED_ROOTS is empty", field="source.folder")
    if "\x00" in folder or not folder or len(folder) > 4096:
        raise SourceError("the folder must be 1 to 4096 characters without NUL bytes", field="source.folder")
    if ".." in Path(folder).parts:
        raise SourceError("the folder may not contain '..'", field="source.folder")
    try:
        real = Path(folder).resolve(strict=True)
    except FileNotFoundError:
        raise SourceError(f"{folder}: no such folder", field="source.folder") from None
    except (OSError, RuntimeError) as exc:
        raise SourceError(f"{folder[:200]}: cannot be resolved ({type(exc).__name__})", field="source.folder") from None
    if not any(real == r.resolve() or real.is_relative_to(r.resolve()) for r in roots):
        raise SourceError(f"{folder}: outside the allowed folders", field="source.folder")
    if not real.is_dir():
        raise SourceError(f"{folder}: not a folder", field="source.folder")
    return real


def scan(folder: Path, pattern: str, roots: list[Path]) -> Iterator[FileFacts]:
    """Regular files matching ``pattern`` under ``folder`` that resolve inside the roots (lazily)."""
    for n, candidate in enumerate(folder.glob(pattern)):
        if n >= MAX_SCAN:
            log.warning("%s: more than %d entries match %r; the rest wait for the next run", folder, MAX_SCAN, pattern)
            return
        try:
            real = resolve_local(str(candidate), roots)
            st = real.stat()
        except (SourceError, OSError):
            continue  # a symlink out of the roots, a FIFO, a directory, a file that just vanished
        yield FileFacts(str(real), st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class FireResult:
    schedule_id: str
    jobs: tuple[str, ...]
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"schedule_id": self.schedule_id, "jobs": list(self.jobs), "error": self.error}


def _fire_folder(
    settings: Settings, sched: Schedule, store: SqlResultStore, schedules: ScheduleStore, enqueue: Callable[[str], None]
) -> list[str]:
    roots = list(settings.allowed_roots)
    folder = resolve_folder(sched.source, roots)
    candidates = scan(folder, check_glob(sched.glob), roots)
    options = JobOptions.parse(sched.options).stored()
    made: list[str] = []
    while len(made) < sched.max_files_per_run and (chunk := list(islice(candidates, SCAN_CHUNK))):
        seen = schedules.seen_keys(sched.id, (f.key for f in chunk))
        fresh = new_files(
            chunk, seen, now_ns=time.time_ns(), settle_s=sched.settle_s, limit=sched.max_files_per_run - len(made)
        )
        for f in fresh:
            if not schedules.claim_file(sched.id, f.key, f.path, f.size, f.mtime_ns):
                continue  # a concurrent run took it
            try:
                job, created = store.create_job(
                    f.path, Path(f.path).name, options, idempotency_key=f"sched:{sched.id}:{f.key}",
                    schedule_id=sched.id, webhook_url=sched.webhook_url,
                )  # fmt: skip
            except Exception:
                schedules.release_file(sched.id, f.key)
                raise
            schedules.set_file_job(sched.id, f.key, job.id)
            if created:
                enqueue(job.id)
                made.append(job.id)
    return made


def _fire_url(
    settings: Settings,
    sched: Schedule,
    store: SqlResultStore,
    token: str,
    enqueue: Callable[[str], None],
) -> list[str]:
    check_url(sched.source, settings.scheduler.allow_private_urls)
    options = JobOptions.parse(sched.options).stored()
    job, created = store.create_job(
        sched.source, sched.source.split("?", 1)[0][:512], options, idempotency_key=f"sched:{sched.id}:run:{token}",
        schedule_id=sched.id, webhook_url=sched.webhook_url,
    )  # fmt: skip
    if created:
        enqueue(job.id)
        return [job.id]
    return []


def fire(
    settings: Settings, schedule_id: str, token: str, enqueue: Callable[[str], None], manual: bool = False
) -> FireResult:
    """One run of a schedule. ``token`` identifies the run (the Celery task id): a redelivered run
    reuses it and so creates no second URL job; folder runs are deduplicated per file."""
    store = _store(settings)
    schedules = ScheduleStore(store.engine)
    try:
        sched = schedules.get(schedule_id)
    except NotFound:
        log.info("schedule %s no longer exists; nothing to run", schedule_id)
        return FireResult(schedule_id, (), "deleted")
    if not sched.enabled and not manual:
        return FireResult(schedule_id, (), "disabled")
    error: str | None = None
    made: list[str] = []
    try:
        if sched.source_kind == "folder":
            made = _fire_folder(settings, sched, store, schedules, enqueue)
        else:
            made = _fire_url(settings, sched, store, token, enqueue)
    except FramescribeError as exc:
        error = exc.message
        log.warning("schedule %s (%s): %s", sched.id, sched.name, exc.message)
    schedules.mark_run(schedule_id, jobs_created=len(made), error=error)
    if made:
        log.info("schedule %s (%s): %d new job(s)", sched.id, sched.name, len(made))
    return FireResult(schedule_id, tuple(made), error)


def _queue_of(task: Task[Any, Any], settings: Settings) -> str:
    info = task.request.delivery_info or {}
    return str(info.get("routing_key") or settings.worker.queue)


@app.task(name=FIRE_SCHEDULE, bind=True, ignore_result=True)  # type: ignore[untyped-decorator]
def fire_schedule(self: Task[Any, Any], schedule_id: str, manual: bool = False) -> dict[str, Any]:
    """Beat (or ``POST /v1/schedules/{id}/run``) asks for one run of the schedule."""
    from worker.adapters.queue.celery import CeleryEnqueuer

    settings = get_settings()
    enqueuer = CeleryEnqueuer(settings, app=app, queue=_queue_of(self, settings))
    return fire(settings, schedule_id, str(self.request.id), enqueuer.enqueue_job, manual).as_dict()


# -- webhooks ---------------------------------------------------------------------------------
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
        check_url(url, allow)
    except SourceError as exc:
        return Attempt(None, f"refused: {exc.message}", took(), retryable=False)
    try:
        with httpx.Client(follow_redirects=False, timeout=WEBHOOK_TIMEOUT_S, trust_env=False) as client:
            resp = client.post(url, content=body, headers=headers)
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
    store = _store(settings)
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


@app.task(name=SEND_WEBHOOK, bind=True, ignore_result=True, max_retries=None)  # type: ignore[untyped-decorator]
def send_webhook(self: Task[Any, Any], job_id: str) -> bool:
    """POST the finished job to its webhook URL; retried with backoff until it is accepted or the
    attempts (``scheduler.webhook_max_attempts``) are spent. Returns True when delivered."""
    settings = get_settings()
    attempt = int(self.request.retries) + 1
    result = deliver(settings, job_id, str(self.request.id), attempt)
    if result is None or result.ok:
        return result is not None
    if not result.retryable or attempt >= settings.scheduler.webhook_max_attempts:
        log.warning("job %s: webhook not delivered after %d attempt(s): %s", job_id, attempt, result.error)
        return False
    delay = webhook_delay(attempt, settings)
    log.info("job %s: webhook attempt %d failed (%s); retrying in %.1f s", job_id, attempt, result.error, delay)
    raise cast(Exception, self.retry(countdown=delay))


def deliver_until_done(settings: Settings, job_id: str) -> bool:
    """The in-process webhook sender: attempts with the same backoff as ``send_webhook``, one delivery id.
    Returns True when delivered."""
    delivery_id = uuid.uuid4().hex
    for attempt in range(1, settings.scheduler.webhook_max_attempts + 1):
        result = deliver(settings, job_id, delivery_id, attempt)
        if result is None or result.ok:
            return result is not None
        if not result.retryable or attempt >= settings.scheduler.webhook_max_attempts:
            log.warning("job %s: webhook not delivered after %d attempt(s): %s", job_id, attempt, result.error)
            return False
        time.sleep(webhook_delay(attempt, settings))
    return False
