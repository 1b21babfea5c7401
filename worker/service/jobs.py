"""The job service: submit, estimate, cancel, retry, delete, finish and run a job.

The CLI, the REST routes, the in-process runner and the Celery tasks all call these, so a job behaves
the same whichever way it came in: the same sources, the same state checks, a summary and a webhook
when it ends, and a failure to build its describer, reader or source ends it ``failed`` with the reason.
"""

from __future__ import annotations

import logging
import shutil
import time

from worker.core.models import Job, JobSummary, VideoInfo
from worker.core.states import LIVE_JOB, RETRYABLE_JOB, TERMINAL_JOB, JobState
from worker.errors import FramescribeError, JobConflict, QueueUnavailable
from worker.options import JobOptions
from worker.service import finish as finishing
from worker.service import plan as planning
from worker.service import runner, sources
from worker.service.context import Ports
from worker.service.plan import Estimate
from worker.service.sources import Source

log = logging.getLogger(__name__)


def create(
    ports: Ports,
    source: Source,
    opts: JobOptions,
    *,
    idempotency_key: str | None = None,
    webhook_url: str | None = None,
) -> tuple[Job, bool]:
    """Store a queued job (not yet on any queue). Returns ``(job, created)``."""
    return ports.store.create_job(
        source.location, source.name, opts.stored(), idempotency_key=idempotency_key, webhook_url=webhook_url
    )


def submit(
    ports: Ports,
    source: Source,
    opts: JobOptions,
    *,
    idempotency_key: str | None = None,
    webhook_url: str | None = None,
) -> tuple[Job, bool]:
    """Store the job and queue it. A queue that is down withdraws the job again (QueueUnavailable),
    so that nothing is left ``queued`` with nothing to move it."""
    job, created = create(ports, source, opts, idempotency_key=idempotency_key, webhook_url=webhook_url)
    if created:
        try:
            ports.queue().enqueue_job(job.id)
        except QueueUnavailable:
            ports.store.delete_job(job.id)
            raise
    return job, created


def estimate(info: VideoInfo, opts: JobOptions, ports: Ports) -> Estimate:
    """Segments, frames and video tokens for ``info``; refuses plans over the caps (BudgetExceeded)."""
    est = planning.estimate(info, opts, ports.settings)
    planning.check_budget(est, opts, ports.settings)
    return est


def finish(ports: Ports, job_id: str, reason: str | None = None) -> JobSummary | None:
    """Summarise once (the caller that wins the store's claim), then queue the webhook. None if lost."""
    summary = finishing.finish(ports, job_id, reason)
    if summary is None:
        return None
    job = ports.store.get_job(job_id)
    log.info("job %s summarised: %s (%d of %d segments described)", job_id, job.state, summary.segments_done,
             summary.segments_total)  # fmt: skip
    if job.webhook_url:
        try:
            ports.queue().send_webhook(job_id)
        except QueueUnavailable as exc:
            log.warning("job %s: could not queue its webhook: %s", job_id, exc.message)
    return summary


def fail(ports: Ports, job_id: str, reason: str) -> None:
    """End a live job ``failed`` with ``reason`` (pending segments cancelled), then finish it."""
    ports.store.set_job_state(job_id, JobState.FAILED, reason, only_from=LIVE_JOB)
    ports.store.cancel_remaining(job_id, reason)
    finish(ports, job_id)


def cancel(ports: Ports, job_id: str) -> int:
    """Stop a live job's pending and running segments (finished ones stay) and finish it at once:
    summary and webhook. Returns how many segments were stopped.

    Raises:
        JobConflict: the job already ended (HTTP 409 ``already_ended``).
    """
    job = ports.store.get_job(job_id)
    if job.state in TERMINAL_JOB:
        raise JobConflict("already_ended", f"job {job_id} already ended ({job.state}); nothing to cancel")
    stopped = ports.store.cancel_job(job_id)
    if finish(ports, job_id, "cancelled") is None:
        _await_summary(ports, job_id)
    return stopped


def _await_summary(ports: Ports, job_id: str, timeout_s: float = 10.0) -> None:
    """A worker whose segment the cancel stopped can win the summary claim a moment before the cancel
    does: wait (bounded) for its summary, so that a cancel returns a summarised job either way. A
    finisher that dies meanwhile is taken over by recovery when its claim's lease expires."""
    deadline = time.monotonic() + timeout_s
    while ports.store.get_job(job_id).summary is None and time.monotonic() < deadline:
        time.sleep(0.05)


def retry(ports: Ports, job_id: str) -> int:
    """Reset a failed, partial or cancelled job's failed and cancelled segments and queue the job to be
    planned again (re-probe, budget re-check; stored segments are kept). Returns the segments reset
    (0 when the job had none: it failed before planning and is planned afresh).

    Raises:
        JobConflict: the job is live (``not_retryable``) or has nothing to retry (``nothing_to_retry``).
    """
    store = ports.store
    job = store.get_job(job_id)
    if job.state not in RETRYABLE_JOB:
        raise JobConflict("not_retryable", f"job {job_id} is {job.state}; only failed, partial or cancelled jobs retry")
    reset = store.reset_failed(job_id)
    if not reset:
        if job.segment_count:
            raise JobConflict("nothing_to_retry", f"job {job_id} has no failed or cancelled segments")
        if not store.reopen_job(job_id):  # it failed before planning: plan it again
            raise JobConflict("nothing_to_retry", f"job {job_id} cannot be reopened")
    ports.queue().enqueue_job(job_id)
    return len(reset)


def delete(ports: Ports, job_id: str) -> None:
    """Delete a job (a live one is cancelled first), its rows, frames, download and upload."""
    job = ports.store.get_job(job_id)
    if job.state not in TERMINAL_JOB:
        ports.store.cancel_job(job_id)
    ports.store.delete_job(job_id)
    ports.frames.drop_job(job_id)
    shutil.rmtree(sources.download_dir(ports.settings, job_id), ignore_errors=True)
    upload = sources.upload_dir_of(ports.settings, job.source)
    if upload is not None:
        shutil.rmtree(upload, ignore_errors=True)


def run(ports: Ports, job_id: str) -> JobSummary:
    """Run a job in this process (``framescribe run``, the inline queue). Planning failures (source,
    reader, describer, budget) end the job ``failed`` with a summary and webhook, then re-raise."""
    job = ports.store.get_job(job_id)
    if job.state not in LIVE_JOB:
        raise JobConflict("not_runnable", f"job {job_id} is {job.state}; nothing to run")
    try:
        return runner.run_inline(ports, job_id, finish)
    except FramescribeError as exc:
        state = ports.store.get_job(job_id).state
        if state in LIVE_JOB:
            fail(ports, job_id, exc.message)
        else:
            finish(ports, job_id)
        raise
