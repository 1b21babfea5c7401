"""``/v1/jobs``: submit (path, URL or upload; dry run; Idempotency-Key), list, read, events, control."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from scheduler import intake
from scheduler.api.deps import PortsDep, Principal, ReadAccess, SchedulesDep, SettingsDep, StoreDep, WriteAccess
from scheduler.api.errors import ApiError, validation_message
from scheduler.api.guards import StreamSlots
from scheduler.api.models import (
    DryRunPublic,
    ErrorBody,
    JobAccepted,
    JobCreate,
    JobPublic,
    JobsPublic,
    SegmentPublic,
    SegmentsPublic,
    SummaryPublic,
)
from worker import spend
from worker.adapters.stores.blobs import SqlFrameBlobs
from worker.adapters.stores.sql import SqlResultStore
from worker.config import Settings
from worker.core.models import Job, SegmentRow
from worker.core.states import TERMINAL_JOB
from worker.service import jobs as job_service
from worker.service import sources
from worker.service.context import Ports
from worker.sources import download

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JOB_ID = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$", description="A job id (32 hex characters).")]
JSON_MAX_BYTES = 1024 * 1024
SSE_POLL_S = 0.5
SSE_MAX_POLL_S = 2.0
SSE_HEARTBEAT_S = 15.0
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 413, 415, 422, 503)
}
STATES = Literal["queued", "running", "done", "partial", "failed", "cancelled"]


# -- helpers ----------------------------------------------------------------------------------
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


def public(job: Job, store: SqlResultStore, settings: Settings) -> dict[str, Any]:
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


def accepted(job: Job, created: bool, store: SqlResultStore, settings: Settings) -> JSONResponse:
    body = public(job, store, settings) | {"created": created}
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=202, headers=headers)


def scoped_key(principal: Principal, key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > 160 or not key.isprintable() or not key.isascii():
        raise ApiError(422, "invalid_field", "Idempotency-Key must be 1 to 160 printable ASCII characters",
                       field="Idempotency-Key")  # fmt: skip
    return f"{principal.id}:{key}"


async def read_json(request: Request) -> JobCreate:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > JSON_MAX_BYTES:
            raise ApiError(413, "too_large", f"the JSON body is larger than {JSON_MAX_BYTES} bytes")
    try:
        return JobCreate.model_validate_json(bytes(raw) or b"{}")
    except ValidationError as exc:
        code, message, field = validation_message(exc.errors())
        raise ApiError(422, code, message, field=field) from None


def parse_upload_options(raw: bytes) -> JobCreate:
    data = intake.parse_options_part(raw)
    try:
        body = JobCreate.model_validate(data)
    except ValidationError as exc:
        code, message, field = validation_message(exc.errors())
        raise ApiError(422, code, f"options: {message}", field=f"options.{field}" if field else "options") from None
    if body.path or body.url:
        raise ApiError(422, "invalid_field", "an upload carries its own file: leave out path and url", field="options")
    return body


def plan_estimate(info: Any, body: JobCreate, ports: Ports) -> dict[str, Any]:
    """The dry-run answer; also refuses plans over the budget caps (422) before anything is queued."""
    est = job_service.estimate(info, body.options(), ports)
    return DryRunPublic(video=info.as_dict(), estimate=est.as_dict()).model_dump(mode="json")


def probe_url_copy(url: str, settings: Settings) -> Any:
    """Download (within the limits) into a temporary folder and probe it: dry runs of URL sources."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.data_dir, prefix=".dryrun-") as tmp:
        path = download(
            url,
            Path(tmp),
            max_bytes=settings.limits.max_download_bytes,
            timeout_s=settings.limits.download_timeout_s,
            allow=intake.url_allow(settings),
        )
        return intake.probe_local(path, settings, "the URL's content", "url")


# -- submit -----------------------------------------------------------------------------------
SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobCreate"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "The video."},
                        "options": {"type": "string", "description": "JobCreate fields as JSON (no path/url)."},
                    },
                }
            },
        },
    }
}


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    responses={200: {"model": DryRunPublic, "description": "dry run: the estimate"}, **ERRORS},
    openapi_extra=SUBMIT_BODY,
    summary="Submit a job (JSON with path or url, or a multipart upload)",
)
async def submit(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    ports: PortsDep,
    principal: WriteAccess,
    idempotency_key: Annotated[str | None, Header(description="Same key, same job (per API key).")] = None,
) -> Response:
    key = scoped_key(principal, idempotency_key)
    if key and (seen := await run_in_threadpool(store.job_by_key, key)):
        return accepted(seen, False, store, settings)
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        return await _submit_upload(request, settings, store, ports, key)
    if ctype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
    body = await read_json(request)
    return await run_in_threadpool(_submit_json, body, settings, store, ports, key)


def _submit_json(body: JobCreate, settings: Settings, store: SqlResultStore, ports: Ports, key: str | None) -> Response:
    if (body.path is None) == (body.url is None):
        raise ApiError(422, "invalid_field", "give exactly one source: path or url (or upload a file)", field="path")
    if body.webhook_url:
        intake.check_webhook(body.webhook_url, settings)
    if body.path is not None:
        real = intake.check_path(body.path, settings)
        info = intake.probe_local(real, settings, body.path, "path")
        estimate = plan_estimate(info, body, ports)
        if body.dry_run:
            return JSONResponse(estimate, status_code=200)
        source = sources.Source(str(real), real.name)
    else:
        assert body.url is not None
        intake.preflight_url(body.url, settings)
        if body.dry_run:
            return JSONResponse(plan_estimate(probe_url_copy(body.url, settings), body, ports), status_code=200)
        source = sources.Source(body.url, sources.url_name(body.url))
    job, created = job_service.submit(ports, source, body.options(), idempotency_key=key, webhook_url=body.webhook_url)
    return accepted(job, created, store, settings)


async def _submit_upload(
    request: Request, settings: Settings, store: SqlResultStore, ports: Ports, key: str | None
) -> Response:
    up = await intake.receive_upload(request, settings)
    try:
        body = parse_upload_options(up.options)
        if body.webhook_url:
            intake.check_webhook(body.webhook_url, settings)
        assert up.path is not None
        info = await run_in_threadpool(intake.probe_local, up.path, settings, f"the upload '{up.filename}'", "file")
        estimate = await run_in_threadpool(plan_estimate, info, body, ports)  # never plan on the event loop
        if body.dry_run:
            up.discard()
            return JSONResponse(estimate, status_code=200)
        job, created = await run_in_threadpool(
            job_service.submit, ports, sources.Source(str(up.path), up.filename), body.options(),
            idempotency_key=key, webhook_url=body.webhook_url,
        )  # fmt: skip
    except BaseException:  # QueueUnavailable included: the job was withdrawn
        up.discard()
        raise
    if not created:
        up.discard()
    return accepted(job, created, store, settings)


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


# -- events -----------------------------------------------------------------------------------
def stream_slots(request: Request) -> StreamSlots:
    slots: StreamSlots | None = getattr(request.app.state, "event_streams", None)
    if slots is None:
        slots = request.app.state.event_streams = StreamSlots()
    return slots


def _sse(event: str, data: dict[str, Any], seq: int) -> bytes:
    return f"id: {seq}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _snapshot(store: SqlResultStore, job_id: str, want_rows: bool) -> tuple[Job | None, dict[str, int], list[Any]]:
    try:
        job = store.get_job(job_id)
    except Exception:
        return None, {}, []
    counts = store.counts(job_id)
    rows = list(store.segment_rows(job_id)) if want_rows else []
    return job, counts, rows


@router.get(
    "/{job_id}/events",
    responses={200: {"content": {"text/event-stream": {}}}, **ERRORS},
    summary="Server-sent events: segment done/failed, progress, job state; ends when the job ends",
)
async def events(
    job_id: JOB_ID, request: Request, store: StoreDep, settings: SettingsDep, principal: ReadAccess
) -> StreamingResponse:
    await run_in_threadpool(store.get_job, job_id)
    who = principal.id if principal.id != "local" else f"local:{request.client.host if request.client else ''}"
    slots = stream_slots(request)
    token = slots.take(who, settings.security.max_event_streams_per_client)
    if token is None:
        cap = settings.security.max_event_streams_per_client
        message = f"at most {cap} event streams per client may be open at once; close one first"
        raise ApiError(429, "too_many_streams", message, headers={"Retry-After": "5"})

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for chunk in _changes():
                yield chunk
        finally:
            slots.give(who, token)

    async def _changes() -> AsyncIterator[bytes]:
        seq, last_state, last_counts = 0, None, None
        seen: dict[int, str] = {}
        quiet, wait = 0.0, SSE_POLL_S
        while not await request.is_disconnected():
            slots.touch(who, token)
            # cheap aggregate every poll; the segment rows only when the counts moved
            job, counts, rows = await run_in_threadpool(_snapshot, store, job_id, False)
            if job is not None and counts != last_counts:
                job, counts, rows = await run_in_threadpool(_snapshot, store, job_id, True)
            if job is None:
                seq += 1
                yield _sse("end", {"job_id": job_id, "state": "deleted"}, seq)
                return
            changed = False
            if counts != last_counts:
                for row in rows:
                    if row.state in ("done", "static", "failed") and seen.get(row.index) != row.state:
                        seen[row.index] = row.state
                        seq += 1
                        yield _sse(
                            "segment",
                            {"index": row.index, "state": row.state, "start_ms": row.start_ms, "end_ms": row.end_ms,
                             "description": row.description, "error": row.error},
                            seq,
                        )  # fmt: skip
                seq += 1
                yield _sse("progress", {"job_id": job_id, "segments": job.segment_count, "counts": counts}, seq)
                last_counts, changed = counts, True
            if job.state != last_state:
                seq += 1
                yield _sse("state", {"job_id": job_id, "state": job.state, "error": job.error}, seq)
                last_state, changed = job.state, True
            if job.state in TERMINAL_JOB:
                seq += 1
                yield _sse("end", {"job_id": job_id, "state": job.state}, seq)
                return
            wait = SSE_POLL_S if changed else min(SSE_MAX_POLL_S, wait * 1.5)  # idle streams poll less
            quiet = 0.0 if changed else quiet + wait
            if quiet >= SSE_HEARTBEAT_S:
                quiet = 0.0
                yield b": keep-alive\n\n"
            await asyncio.sleep(wait)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


# -- control ----------------------------------------------------------------------------------
@router.post("/{job_id}/cancel", response_model=JobPublic, responses=ERRORS, summary="Cancel a queued/running job")
def cancel(job_id: JOB_ID, store: StoreDep, settings: SettingsDep, ports: PortsDep, _: WriteAccess) -> dict[str, Any]:
    job_service.cancel(ports, job_id)  # 409 already_ended; summary and webhook at once
    return public(store.get_job(job_id), store, settings)


@router.post("/{job_id}/retry", status_code=202, response_model=JobPublic, responses=ERRORS,
             summary="Run a job's failed or cancelled segments again")  # fmt: skip
def retry(job_id: JOB_ID, store: StoreDep, settings: SettingsDep, ports: PortsDep, _: WriteAccess) -> dict[str, Any]:
    job_service.retry(ports, job_id)  # 409 not_retryable / nothing_to_retry
    return public(store.get_job(job_id), store, settings)


@router.delete("/{job_id}", status_code=204, responses=ERRORS, summary="Delete a job, its rows and its frames")
def delete(job_id: JOB_ID, schedules: SchedulesDep, ports: PortsDep, _: WriteAccess) -> Response:
    job_service.delete(ports, job_id)
    schedules.delete_deliveries(job_id)
    return Response(status_code=204)
