"""Finishing a job: the caller that wins the store's atomic claim builds and stores the summary, once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from worker import failpoints, spend
from worker.core.models import Job, JobSummary, SegmentRow
from worker.core.ports import ResultStore
from worker.core.prompts import DEFAULT_PRESETS
from worker.core.states import JobState
from worker.core.summary import build_summary
from worker.errors import DescriberUnavailable, FramescribeError
from worker.leases import new_owner, renewing
from worker.service import reuse
from worker.service.context import Ports
from worker.service.options import resolve
from worker.service.plan import describer_kind, job_caps, options_of, request_limits
from worker.summarise import summarise

log = logging.getLogger(__name__)


def finish(ports: Ports, job_id: str, stopped_reason: str | None = None) -> JobSummary | None:
    """Summarise once: the caller that wins the store's summary lease builds and stores the summary. The
    lease is renewed while the summary is built (a model call may take a while); a finisher that dies
    lets it expire and another (the recovery loop) takes over. Storing is conditional on still holding
    it, in one transaction with the webhook's outbox row: exactly one summary, one delivery id."""
    store, w = ports.store, ports.settings.worker
    owner = new_owner()
    if not store.claim_summary(job_id, owner, w.lease_ttl_s):
        return None
    failpoints.hit("after_summary_claim", job_id, -1)
    with renewing(lambda: store.renew_summary(job_id, owner, w.lease_ttl_s), w.lease_heartbeat_s, f"job {job_id}"):
        summary, error = _build(ports, job_id, stopped_reason)
    if not store.finish_job(job_id, summary, summary.state, error, owner=owner):
        log.warning("job %s: the summary lease was taken over while summarising; the other finisher stores it", job_id)
        return None
    ports.on_event("job_done", {"job_id": job_id, "state": summary.state})
    return summary


def _build(ports: Ports, job_id: str, stopped_reason: str | None) -> tuple[JobSummary, str | None]:
    store = ports.store
    job = store.get_job(job_id)
    duration = int((job.video or {}).get("duration_ms", 0))
    stopped_reason = stopped_reason or (job.video or {}).get("warning") or _cancel_reason(store, job_id)
    # a job an outage stopped is summarised locally: no request past the open circuit
    outage_stop = any(DescriberUnavailable.named_in(m) for m in (stopped_reason, job.error)) or any(
        r.state == "failed" and DescriberUnavailable.named_in(r.error) for r in store.segment_rows(job_id)
    )
    summary = job_summary(ports, job, duration, stopped_reason, local=outage_stop)
    opts = options_of(job)
    if describer_kind(opts, ports.settings) == "dashscope":
        limits = request_limits(opts, ports.settings)
        saved = reuse.tokens_saved(store.segment_rows(job_id), job.video, limits, ports.settings)
        summary = replace(summary, video_tokens_saved=saved)
        summary = spend.with_cost(summary, opts, ports.settings)
    error = job.error
    if job.state == JobState.CANCELLED:  # stopped by the user: the summary says so, as the job does
        return replace(summary, state=JobState.CANCELLED), error
    outage = next((m for m in (error, stopped_reason) if DescriberUnavailable.named_in(m)), None)
    if outage and summary.state == "failed":  # stopped by an outage, not by the input: retry resumes it
        summary, error = replace(summary, state=JobState.PARTIAL), error or outage
    if summary.state == "failed" and not error:
        failed = next((r.error for r in store.segment_rows(job_id) if r.state == "failed"), None)
        error = f"no segment could be described: {failed}" if failed else "no segment could be described"
    return summary, error


def job_summary(
    ports: Ports, job: Job, duration_ms: int, stopped_reason: str | None, *, local: bool = False
) -> JobSummary:
    """A DashScope summary over the segment descriptions when the job used DashScope (and ``local`` is
    false), else local."""
    opts = options_of(job)

    def rows() -> Iterator[SegmentRow]:
        return ports.store.segment_rows(job.id)

    model: Any = None
    if not local and describer_kind(opts, ports.settings) == "dashscope":
        try:
            model = ports.describer_for(opts)
        except FramescribeError as exc:
            log.warning("job %s: no model for the summary (%s); using the local summary", job.id, exc.message)
    if not callable(getattr(model, "complete", None)):
        return build_summary(rows(), duration_ms, stopped_reason)
    preset = ports.prompts.get(resolve(opts, ports.settings).preset) or DEFAULT_PRESETS["describe"]
    caps = job_caps(ports, job)
    return summarise(
        rows,
        duration_ms,
        stopped_reason,
        model=model,
        template=preset.summary,
        source_name=job.source_name,
        batch_tokens=ports.settings.dashscope.summary_batch_tokens,
        job_id=job.id,
        calls_left=None if caps is None else caps.calls_left(),
    )


def _cancel_reason(store: ResultStore, job_id: str) -> str | None:
    return next((r.error for r in store.segment_rows(job_id) if r.state == "cancelled" and r.error), None)
