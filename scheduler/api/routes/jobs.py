"""``/v1/jobs``: list, read, frames and control (cancel, retry, delete). Thin: what a job looks like on
the wire is in ``scheduler.api.presenters``, submitting in ``job_submit``, the event stream in
``job_events`` (routers of their own under the same prefix)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from scheduler.api.deps import PortsDep, ReadAccess, SchedulesDep, SettingsDep, StoreDep, WriteAccess
from scheduler.api.errors import ApiError
from scheduler.api.models import JobPublic, JobsPublic, SegmentsPublic, SummaryPublic
from scheduler.api.params import ERRORS, JOB_ID
from scheduler.api.presenters import public, segment_public
from worker.adapters.stores.blobs import SqlFrameBlobs
from worker.service import jobs as job_service

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
STATES = Literal["queued", "running", "done", "partial", "failed", "cancelled"]


def changed(request: Request, job_id: str) -> None:
    """Wake the job's event streams after a change made here (cancel, retry, delete)."""
    feed = getattr(request.app.state, "feed", None)
    if feed is not None:
        feed.notify(job_id)  # routes run on worker threads


# -- read -------------------------------------------------------------------------------------
@router.get("", response_model=JobsPublic, responses=ERRORS, summary="List jobs, newest first")
def list_jobs(
    store: StoreDep,
    settings: SettingsDep,
    _: ReadAccess,
    state: STATES | None = None,
    source: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")] = None,
    schedule_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$", description="next_cursor of the last page")] = None,
) -> dict[str, Any]:
    if cursor is not None:
        try:
            store.get_job(cursor)
        except Exception:
            raise ApiError(422, "invalid_cursor", "the cursor names no job (was it deleted?); start again without it",
                           field="cursor") from None  # fmt: skip
    jobs = store.list_jobs(state=state, schedule_id=schedule_id, source=source, limit=limit, before=cursor)
    next_cursor = jobs[-1].id if len(jobs) == limit else None
    return {"items": [public(j, store, settings) for j in jobs], "next_cursor": next_cursor}


@router.get("/{job_id}", response_model=JobPublic, responses=ERRORS, summary="One job: state, progress, usage")
def get_job(job_id: JOB_ID, store: StoreDep, settings: SettingsDep, _: ReadAccess) -> dict[str, Any]:
    return public(store.get_job(job_id), store, settings)


@router.get("/{job_id}/segments", response_model=SegmentsPublic, responses=ERRORS, summary="The job's segments")
def segments(
    job_id: JOB_ID,
    store: StoreDep,
    _: ReadAccess,
    after: Annotated[int, Query(ge=-1, le=10**9)] = -1,
    limit: Annotated[int, Query(ge=1, le=2000)] = 500,
) -> dict[str, Any]:
    store.get_job(job_id)
    items: list[dict[str, Any]] = []
    for row in store.segment_rows(job_id):
        if row.index <= after:
            continue
        items.append(segment_public(job_id, row, len(store.frames(job_id, row.index)) if row.frame_count else 0))
        if len(items) >= limit:
            break
    next_after = items[-1]["index"] if len(items) == limit else None
    return {"job_id": job_id, "items": items, "next_after": next_after}


@router.get("/{job_id}/summary", response_model=SummaryPublic, responses=ERRORS, summary="The job's summary")
def summary(job_id: JOB_ID, store: StoreDep, _: ReadAccess) -> dict[str, Any]:
    job = store.get_job(job_id)
    if not job.summary:
        raise ApiError(409, "not_ready", f"job {job_id} is {job.state}; its summary appears when it ends")
    return {"job_id": job_id, "state": job.state, "summary": job.summary}


@router.get(
    "/{job_id}/frames/{seg}/{n}.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **ERRORS},
    summary="One sampled frame (JPEG; its review-size copy when sampled on another machine)",
)
def frame(
    job_id: JOB_ID,
    seg: Annotated[int, PathParam(ge=0, le=10**9)],
    n: Annotated[int, PathParam(ge=0, le=10**6)],
    store: StoreDep,
    settings: SettingsDep,
    _: ReadAccess,
) -> Response:
    store.get_job(job_id)
    ref = next((f for f in store.frames(job_id, seg) if f.n == n), None)
    if ref is None:
        raise ApiError(404, "not_found", f"job {job_id} has no frame {n} in segment {seg}")
    path = Path(ref.path).resolve()
    if path.is_relative_to(settings.data_dir.resolve()) and path.is_file():
        return FileResponse(path, media_type="image/jpeg")
    copy = SqlFrameBlobs(store.engine).get(job_id, seg, n)  # sampled on another machine: its review copy
    if copy is None:
        raise ApiError(404, "not_found", f"frame {n} of segment {seg} is no longer on disk")
    return Response(copy, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


# -- control ----------------------------------------------------------------------------------
@router.post("/{job_id}/cancel", response_model=JobPublic, responses=ERRORS, summary="Cancel a queued/running job")
def cancel(
    job_id: JOB_ID, request: Request, store: StoreDep, settings: SettingsDep, ports: PortsDep, _: WriteAccess
) -> dict[str, Any]:
    job_service.cancel(ports, job_id)  # 409 already_ended; summary and webhook at once
    changed(request, job_id)
    return public(store.get_job(job_id), store, settings)


@router.post("/{job_id}/retry", status_code=202, response_model=JobPublic, responses=ERRORS,
             summary="Run a job's failed or cancelled segments again")  # fmt: skip
def retry(
    job_id: JOB_ID, request: Request, store: StoreDep, settings: SettingsDep, ports: PortsDep, _: WriteAccess
) -> dict[str, Any]:
    job_service.retry(ports, job_id)  # 409 not_retryable / nothing_to_retry
    changed(request, job_id)
    return public(store.get_job(job_id), store, settings)


@router.delete("/{job_id}", status_code=204, responses=ERRORS, summary="Delete a job, its rows and its frames")
def delete(job_id: JOB_ID, request: Request, schedules: SchedulesDep, ports: PortsDep, _: WriteAccess) -> Response:
    job_service.delete(ports, job_id)
    schedules.delete_deliveries(job_id)
    changed(request, job_id)
    return Response(status_code=204)
