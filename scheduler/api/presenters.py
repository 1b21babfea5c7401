"""How jobs and segments look on the wire (``JobPublic``, ``SegmentPublic``, links): no routing here."""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse

from scheduler.api.models import JobPublic, SegmentPublic
from worker import spend
from worker.config import Settings
from worker.core.models import Job, SegmentRow
from worker.core.ports import ResultStore
from worker.service import sources


def links(job_id: str) -> dict[str, str]:
    base = f"/v1/jobs/{job_id}"
    return {
        "self": base,
        "segments": f"{base}/segments",
        "summary": f"{base}/summary",
        "events": f"{base}/events",
        "cancel": f"{base}/cancel",
        "retry": f"{base}/retry",
    }


def source_kind(job: Job, settings: Settings) -> Literal["path", "url", "upload"]:
    return sources.kind_of(job.source, settings)


def public(job: Job, store: ResultStore, settings: Settings) -> dict[str, Any]:
    return JobPublic(
        id=job.id,
        state=job.state,
        source_name=job.source_name,
        source_kind=source_kind(job, settings),
        options=job.options,
        video=job.video,
        segment_count=job.segment_count,
        progress=store.counts(job.id),
        usage=spend.usage_with_cost(store.usage(job.id), job.options, settings),
        error=job.error or None,
        schedule_id=job.schedule_id,
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
        links=links(job.id),
    ).model_dump(mode="json")


def accepted(job: Job, created: bool, store: ResultStore, settings: Settings) -> JSONResponse:
    body = public(job, store, settings) | {"created": created}
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=202, headers=headers)


def segment_public(job_id: str, row: SegmentRow, frame_count: int) -> dict[str, Any]:
    frames = [f"/v1/jobs/{job_id}/frames/{row.index}/{n}.jpg" for n in range(frame_count)]
    return SegmentPublic(
        index=row.index,
        start_ms=row.start_ms,
        end_ms=row.end_ms,
        state=row.state,
        description=row.description,
        structured=row.structured,
        frame_count=row.frame_count,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        video_tokens=row.video_tokens,
        describer=row.describer,
        model=row.model,
        attempts=row.attempts,
        http_attempts=row.http_attempts,
        latency_ms=row.latency_ms,
        error=row.error,
        reused_from=row.reused_from,
        flags=list(row.flags),
        frames=frames,
    ).model_dump(mode="json")
