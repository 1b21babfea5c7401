"""Thin Celery tasks: ids in, one pipeline step, states and retries out. Safe to run twice.

``plan_job`` probes the video and fans out one ``run_segment`` per pending segment; each
``run_segment`` ends by trying ``jobs.finish``, whose atomic claim in the store lets exactly one
caller build the summary (no chord: reliability-plan §0.3). A re-delivered message finds its row
done and does nothing but that finish attempt.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar, cast

import redis
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import InterfaceError as DbInterfaceError
from sqlalchemy.exc import OperationalError as DbOperationalError

from worker import failpoints
from worker.adapters.queue.broker_scan import URGENT
from worker.adapters.queue.celery import CeleryEnqueuer
from worker.bootstrap import build_ports, store_for
from worker.celery_app import (
    FIRE_SCHEDULE,
    GC_FRAMES,
    PLAN_JOB,
    REAP_STALE,
    RUN_JOB,
    RUN_SEGMENT,
    SEND_WEBHOOK,
    app,
    soft_time_limit,
)
from worker.config import Settings, get_settings
from worker.core.models import Description
from worker.core.ports import Describer, DescribeRequest, ResultStore
from worker.core.states import LIVE_JOB, JobState
from worker.errors import DescriberAuthError, DescriberTransient, FramescribeError, NotFound
from worker.leases import new_owner, renewing
from worker.options import JobOptions
from worker.recovery import PLANNING, over_attempts, sweep
from worker.service import jobs, schedules, webhooks
from worker.service import plan as planning
from worker.service import segment as pipeline
from worker.service.context import Ports

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
MAX_TRANSIENT_RETRIES = 4  # Celery-level retries of a segment after the describer gave up on its own


# -- per process ------------------------------------------------------------------------------
@functools.cache
def _ports() -> Ports:
    return build_ports(get_settings(), shared_limits=True, check_sources=True)


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(get_settings().broker_url, socket_timeout=10, socket_connect_timeout=10)


def _task_ports(task: Task[Any, Any] | None = None) -> Ports:
    """The process' ports, publishing follow-up work to the queue ``task`` came from."""
    base = _ports()
    queue = _queue_of(task) if task is not None else base.settings.worker.queue
    return dataclasses.replace(base, enqueuer=CeleryEnqueuer(base.settings, app=app, queue=queue))


# -- describer guard: failpoints and Celery-level retry -------------------------------------------
class _RetryLater(Exception):
    """Carries a DescriberTransient past the pipeline's per-segment failure handling to Celery retry."""

    def __init__(self, cause: DescriberTransient) -> None:
        super().__init__(cause.message)
        self.cause = cause


class _Guarded:
    """Wraps the describer of one segment task: failpoints around the call; a transient failure goes to
    Celery's retry (with backoff) instead of failing the segment, except on the last attempt."""

    def __init__(self, inner: Describer, job_id: str, index: int, retry: bool, store: ResultStore) -> None:
        self.inner, self.store = inner, store
        self.name = inner.name
        self.job_id = job_id
        self.index = index
        self.retry = retry

    def describe(self, request: DescribeRequest) -> Description:
        try:
            failpoints.hit("before_describe", self.job_id, self.index)
            desc = self.inner.describe(request)
        except DescriberTransient as exc:
            if self.retry:  # its requests are money even if retried: stored before the segment's reservation
                if (spent := getattr(exc, "spent", None)) is not None:  # is released (service/caps.py)
                    self.store.add_spent(self.job_id, self.index, spent)
                raise _RetryLater(exc) from exc
            raise
        failpoints.hit("after_describe", self.job_id, self.index)
        return desc


def retry_delay(retries: int, retry_after_s: float | None, settings: Settings) -> float:
    """Full-jitter exponential backoff, at least Retry-After, never above ``worker.retry_max_delay_s``
    (so the retry message is acked long before Redis' visibility timeout)."""
    cap = float(settings.worker.retry_max_delay_s)
    delay = random.uniform(0, min(cap, 5.0 * 2**retries))
    return min(cap, max(delay, retry_after_s or 0.0))


# -- helpers ----------------------------------------------------------------------------------
def _queue_of(task: Task[Any, Any]) -> str:
    info = task.request.delivery_info or {}
    return str(info.get("routing_key") or get_settings().worker.queue)


def _delivery(task: Task[Any, Any], settings: Settings) -> int:
    """How often this very message (task id + retry number) was delivered, counted in Redis."""
    key = f"framescribe:deliveries:{task.request.id}:{task.request.retries}"
    try:
        pipe = _redis().pipeline()
        pipe.incr(key)
        pipe.expire(key, settings.worker.visibility_timeout_s * 4)
        count, _ = pipe.execute()
    except redis.RedisError as exc:
        log.warning("cannot count deliveries in Redis (%s); the redelivery cap is off for this task", exc)
        return 1
    return int(count)


def _forget_delivery(task: Task[Any, Any]) -> None:
    """The message is done with: its delivery counter is no longer needed (it would expire anyway)."""
    with suppress(redis.RedisError):
        _redis().delete(f"framescribe:deliveries:{task.request.id}:{task.request.retries}")


def finish_and_notify(ports: Ports, job_id: str, reason: str | None = None) -> bool:
    """Try to summarise the job (exactly one caller wins) and queue its webhook. True if this call won."""
    return jobs.finish(ports, job_id, reason) is not None


# -- tasks ------------------------------------------------------------------------------------
def _task(name: str, **options: Any) -> Callable[[F], F]:
    """``app.task`` with our defaults, typed (Celery ships no type hints)."""
    return cast(Callable[[F], F], app.task(name=name, ignore_result=True, **options))


def _plan(task: Task[Any, Any], job_id: str) -> None:
    ports = _task_ports(task)
    store = ports.store
    try:
        job = store.get_job(job_id)
    except NotFound:
        log.warning("job %s: not in the store (deleted?); nothing to plan", job_id)
        return
    if job.state not in LIVE_JOB:
        log.info("job %s is %s; not planning it", job_id, job.state)
        return
    w = ports.settings.worker
    client, key = _redis(), f"{PLANNING}{job_id}"

    def hold() -> None:  # the recovery loop does not re-send a plan that is being made
        client.set(key, 1, px=int(w.lease_ttl_s * 1000))

    with suppress(redis.RedisError):
        hold()
    try:
        with renewing(hold, w.lease_heartbeat_s, f"job {job_id} planning"):
            planning.plan(ports, job_id)
    except FramescribeError as exc:  # source, reader, describer or budget: the job failed with the reason
        log.warning("job %s failed at planning: %s", job_id, exc.message)
        finish_and_notify(ports, job_id)
        return
    pending = [row.index for row in store.segment_rows(job_id) if row.state == "pending"]
    for index in pending:
        ports.queue().enqueue_segment(job_id, index)
    log.info("job %s: %d segment task(s) queued on %s", job_id, len(pending), _queue_of(task))
    if not pending:
        finish_and_notify(ports, job_id)


STORE_DOWN = (DbOperationalError, DbInterfaceError)  # the result store is unreachable (restart, network)
STORE_DOWN_MAX_RETRIES = 720  # at up to worker.store_retry_max_delay_s (5 s) apart: about an hour of outage


def _retry_store_down(task: Task[Any, Any], what: str, exc: Exception) -> Exception:
    """Nothing can be recorded while the store is down: the task runs again later (it is idempotent),
    instead of failing with its segment left ``running`` until the reaper notices."""
    delay = store_retry_delay(task.request.retries, get_settings())
    log.warning("%s: the result store is unreachable (%s); retrying in %.1f s", what, type(exc).__name__, delay)
    return cast(Exception, task.retry(countdown=delay, max_retries=STORE_DOWN_MAX_RETRIES, priority=URGENT))


def store_retry_delay(retries: int, settings: Settings) -> float:
    """0.5, 1, 2 ... s with jitter, never above ``worker.store_retry_max_delay_s``: work resumes within
    seconds of the database returning."""
    cap = settings.worker.store_retry_max_delay_s
    return float(min(cap, 0.5 * 2 ** min(retries, 10)) * random.uniform(0.5, 1.0))


@_task(PLAN_JOB, bind=True)
def plan_job(self: Task[Any, Any], job_id: str) -> None:
    """Probe the video, store one pending row per segment, queue one run_segment for each."""
    try:
        _plan(self, job_id)
    except STORE_DOWN as exc:
        raise _retry_store_down(self, f"job {job_id} planning", exc) from None


@_task(RUN_JOB, bind=True)
def run_job(self: Task[Any, Any], job_id: str) -> None:
    """Alias of plan_job (the name the conventions doc uses)."""
    try:
        _plan(self, job_id)
    except STORE_DOWN as exc:
        raise _retry_store_down(self, f"job {job_id} planning", exc) from None


@_task(RUN_SEGMENT, bind=True, max_retries=MAX_TRANSIENT_RETRIES)
def run_segment(self: Task[Any, Any], job_id: str, index: int) -> str:
    """Sample, describe and store one segment, then try to finish the job. Returns the segment's state."""
    try:
        state = _run_segment(self, job_id, index)
    except STORE_DOWN as exc:
        raise _retry_store_down(self, f"job {job_id} segment {index}", exc) from None
    log.info("job %s segment %d ended: %s", job_id, index, state)
    _forget_delivery(self)
    return state


def _run_segment(task: Task[Any, Any], job_id: str, index: int) -> str:
    ports = _task_ports(task)
    store, settings = ports.store, ports.settings
    delivery = _delivery(task, settings)
    if delivery > 1:
        log.warning("job %s segment %d: delivery %d of this message (a worker died running it)", job_id, index,
                    delivery)  # fmt: skip
    if delivery > settings.worker.max_redeliveries + 1:
        store.fail_segment(
            job_id, index, f"the worker died {delivery - 1} times while processing this segment (crash, out of "
            "memory or killed); giving up — see the worker logs, then `framescribe retry` the job",
        )  # fmt: skip
        finish_and_notify(ports, job_id)
        return store.segment_state(job_id, index) or "missing"
    try:
        job = store.get_job(job_id)
    except NotFound:
        log.warning("job %s: not in the store (deleted?); dropping segment %d", job_id, index)
        return "missing"
    if job.state == "cancelled":
        store.cancel_remaining(job_id, "the job was cancelled", only_if_cancelled=True)
        finish_and_notify(ports, job_id, "cancelled")
        return store.segment_state(job_id, index) or "missing"
    store.set_job_state(job_id, JobState.RUNNING, only_from=(JobState.QUEUED,))
    sql = store_for(settings.resolved_database_url)  # leases are SQL-store specific
    if over_attempts(settings, sql, job_id, index):
        finish_and_notify(ports, job_id)
        return store.segment_state(job_id, index) or "missing"
    retry = task.request.retries < MAX_TRANSIENT_RETRIES
    w, owner = settings.worker, new_owner()

    def guarded(opts: JobOptions) -> Describer:
        return _Guarded(ports.describer_for(opts), job_id, index, retry, store)

    def renew() -> bool:
        return sql.renew_segment_lease(job_id, index, owner, w.lease_ttl_s)

    try:
        with renewing(renew, w.lease_heartbeat_s, f"job {job_id} segment {index}"):
            pipeline.run_segment(dataclasses.replace(ports, describer_for=guarded), job_id, index)
    except _RetryLater as exc:
        delay = retry_delay(task.request.retries, exc.cause.retry_after_s, settings)
        log.warning("job %s segment %d: %s; retrying in %.1f s", job_id, index, exc.cause.message, delay)
        sql.renew_segment_lease(job_id, index, owner, delay + w.lease_ttl_s)  # held over the countdown
        raise task.retry(countdown=delay, exc=exc.cause, priority=URGENT) from None
    except DescriberAuthError as exc:
        log.warning("job %s: the describer refused our credentials (%s); stopping the job", job_id, exc.message)
        store.cancel_remaining(job_id, exc.message)
        finish_and_notify(ports, job_id, exc.message)
    except SoftTimeLimitExceeded:
        limit = soft_time_limit(settings)
        store.fail_segment(job_id, index, f"the segment took longer than {limit} s (worker.task_time_limit_s)")
        finish_and_notify(ports, job_id)
    except STORE_DOWN:
        raise
    except Exception as exc:  # a bug or an unexpected library error: the row still ends with the reason
        log.exception("job %s segment %d: unexpected error", job_id, index)
        store.fail_segment(job_id, index, f"internal error: {type(exc).__name__}: {exc}"[:4000])
        finish_and_notify(ports, job_id)
    else:
        failpoints.hit("after_store", job_id, index)
        finish_and_notify(ports, job_id)
    # the stored state, not the pipeline's return: a cancelled segment's late result is discarded
    return store.segment_state(job_id, index) or "missing"


@_task(REAP_STALE)
def reap_stale() -> dict[str, int]:
    """One pass of the recovery loop (worker/recovery.py), which every worker also runs every
    ``worker.reaper_interval_s``: beat's schedule is a backstop."""
    settings = get_settings()
    store = store_for(settings.resolved_database_url)  # the recovery queries are SQL-store specific
    return sweep(settings, store, _redis(), CeleryEnqueuer(settings, app=app, queue=settings.worker.queue))


@_task(GC_FRAMES)
def gc_frames() -> dict[str, int]:
    """Apply the frame retention on the machine that runs this task (each worker also does it hourly)."""
    from worker.retention import collect

    return collect(get_settings()).as_dict()


# -- schedules and webhooks -------------------------------------------------------------------
@_task(FIRE_SCHEDULE, bind=True)
def fire_schedule(self: Task[Any, Any], schedule_id: str, manual: bool = False) -> dict[str, Any]:
    """Beat (or ``POST /v1/schedules/{id}/run``) asks for one run of the schedule."""
    settings = get_settings()
    enqueuer = CeleryEnqueuer(settings, app=app, queue=_queue_of(self))
    return schedules.fire(settings, schedule_id, str(self.request.id), enqueuer.enqueue_job, manual).as_dict()


@_task(SEND_WEBHOOK, bind=True, max_retries=None)
def send_webhook(self: Task[Any, Any], job_id: str) -> bool:
    """POST the finished job to its webhook URL from its outbox row (same delivery id on every attempt);
    retried with backoff until accepted or ``scheduler.webhook_max_attempts`` are spent. A sender that
    dies leaves the row due: the recovery loop sends it again. Returns True when delivered."""
    outcome = webhooks.send_from_outbox(get_settings(), job_id)
    if outcome.retry_in_s is None:
        return outcome.delivered
    raise cast(Exception, self.retry(countdown=outcome.retry_in_s + 0.05, priority=URGENT))
