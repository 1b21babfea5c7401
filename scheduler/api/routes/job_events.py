"""``GET /v1/jobs/{id}/events``: server-sent events pushed from the job's shared change feed.

Events: ``segment`` (a segment done, static or failed), ``progress`` (counts), ``state``, and ``end``
(the job ended or was deleted; the stream closes). Each stream diffs the feed's snapshots against what
it already sent, so a late viewer gets every finished segment once. Streams are capped per API key (or
per loopback client in no-key mode): beyond ``security.max_event_streams_per_client`` → 429.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from scheduler.api.deps import ReadAccess, SettingsDep, StoreDep
from scheduler.api.errors import ApiError
from scheduler.api.feed import JobFeed, Snapshot
from scheduler.api.guards import StreamSlots
from scheduler.api.models import ErrorBody
from scheduler.api.params import ERRORS, JOB_ID

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
SSE_HEARTBEAT_S = 15.0
REPORTED = frozenset({"done", "static", "failed"})


def stream_slots(request: Request) -> StreamSlots:
    slots: StreamSlots | None = getattr(request.app.state, "event_streams", None)
    if slots is None:
        slots = request.app.state.event_streams = StreamSlots()
    return slots


def feed_of(request: Request) -> JobFeed:
    feed: JobFeed = request.app.state.feed
    return feed


def sse(event: str, data: dict[str, Any], seq: int) -> bytes:
    return f"id: {seq}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Viewer:
    """What one stream has sent so far; turns feed snapshots into the events it has not seen."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.seq = 0
        self.state: str | None = None
        self.counts: dict[str, int] | None = None
        self.seen: dict[int, str] = {}

    def _event(self, name: str, data: dict[str, Any]) -> bytes:
        self.seq += 1
        return sse(name, data, self.seq)

    def events(self, snap: Snapshot) -> list[bytes]:
        job = snap.job
        if job is None:
            return [self._event("end", {"job_id": self.job_id, "state": "deleted"})]
        out: list[bytes] = []
        if snap.counts != self.counts:
            for row in snap.rows:
                if row.state in REPORTED and self.seen.get(row.index) != row.state:
                    self.seen[row.index] = row.state
                    out.append(self._event("segment", {
                        "index": row.index, "state": row.state, "start_ms": row.start_ms, "end_ms": row.end_ms,
                        "description": row.description, "error": row.error,
                    }))  # fmt: skip
            counts = dict(snap.counts)
            out.append(
                self._event("progress", {"job_id": self.job_id, "segments": job.segment_count, "counts": counts})
            )
            self.counts = snap.counts
        if job.state != self.state:
            out.append(self._event("state", {"job_id": self.job_id, "state": job.state, "error": job.error}))
            self.state = job.state
        if snap.final:
            out.append(self._event("end", {"job_id": self.job_id, "state": job.state}))
        return out


@router.get(
    "/{job_id}/events",
    responses={200: {"content": {"text/event-stream": {}}}, 429: {"model": ErrorBody}, **ERRORS},
    summary="Server-sent events: segment done/failed, progress, job state; ends when the job ends",
)
async def events(
    job_id: JOB_ID, request: Request, store: StoreDep, settings: SettingsDep, principal: ReadAccess
) -> StreamingResponse:
    await run_in_threadpool(store.get_job, job_id)  # 404 before any stream opens
    who = principal.id if principal.id != "local" else f"local:{request.client.host if request.client else ''}"
    slots = stream_slots(request)
    cap = settings.security.max_event_streams_per_client
    token = slots.take(who, cap)
    if token is None:
        message = f"at most {cap} event streams per client may be open at once; close one first"
        raise ApiError(429, "too_many_streams", message, headers={"Retry-After": "5"})
    feed = feed_of(request)

    async def stream() -> AsyncIterator[bytes]:
        viewer = Viewer(job_id)
        try:
            async for snap in feed.watch(job_id, SSE_HEARTBEAT_S):
                slots.touch(who, token)
                if snap is None:
                    yield b": keep-alive\n\n"
                    continue
                for chunk in viewer.events(snap):
                    yield chunk
        finally:
            slots.give(who, token)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
