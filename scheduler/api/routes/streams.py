"""``/v1/streams``: live cameras as a resource — create, list, status, pause/resume, delete.

A stream runs on a Celery worker consuming the ``streams`` queue (``framescribe worker -Q streams``);
its segments are the segments of its job (``job_id``), so search, exports and the review page work on it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from scheduler.api.deps import ReadAccess, SettingsDep, StoreDep, WriteAccess
from scheduler.api.errors import ApiError
from scheduler.api.models import ErrorBody
from worker.config import Settings
from worker.errors import NotFound
from worker.live.common import iso
from worker.live.options import WatchOptions, check_name
from worker.live.schema import LiveSegmentRow
from worker.live.source import LiveSource, check_live
from worker.live.store import LiveStore, Stream
from worker.sources import check_url

router = APIRouter(prefix="/v1", tags=["streams"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)}


class StreamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    url: str = Field(min_length=1, max_length=4096)
    options: dict[str, Any] = Field(default_factory=dict)


def _public(stream: Stream, live: LiveStore | None = None) -> dict[str, Any]:
    body = stream.as_dict(LiveSource(stream.url, "").redacted)
    if live is not None:
        body.update(segments=0, recent=[], gaps=[], alerts=0, digests=[])
    if live is not None and stream.job_id:
        segments = list(live.segments(stream.job_id))
        body["segments"] = len(segments)
        alerted = {int(a.dedup_key.split(":")[1]) for a in live.outbox(stream.name, "alert")}
        body["recent"] = [_recent(live, stream.job_id, r, r.segment_index in alerted) for r in segments[-20:]]
        body["gaps"] = [
            {"start_utc": iso(g.utc_start_ms), "end_utc": iso(g.utc_end_ms), "reason": g.reason}
            for g in live.gaps(stream.job_id)[-50:]
        ]
        body["alerts"] = len(alerted)
        body["digests"] = [
            {"start_utc": iso(d.period_start_ms), "end_utc": iso(d.period_end_ms), "text": d.text}
            for d in live.digests(stream.job_id)[-10:]
        ]
    return body


def _recent(live: LiveStore, job_id: str, r: LiveSegmentRow, alert: bool) -> dict[str, Any]:
    try:
        row = live.store.segment(job_id, r.segment_index)
        state, text = row.state, row.description
    except NotFound:
        state, text = "missing", None
    return {
        "index": r.segment_index,
        "start_utc": iso(r.utc_start_ms),
        "end_utc": iso(r.utc_end_ms),
        "static": r.static,
        "alert": alert,
        "state": state,
        "description": text,
    }


def _start(request: Request, settings: Settings, stream_id: str) -> None:
    from worker.live.tasks import send_run

    enqueuer = request.app.state.enqueuer
    starter = getattr(enqueuer, "start_stream", None)
    if callable(starter):
        starter(stream_id)
        return
    producer = getattr(enqueuer, "app", None)
    if producer is None:
        raise ApiError(503, "no_workers", "streams run on Celery workers (-Q streams); this service runs inline")
    send_run(settings, stream_id, producer)


def _get(live: LiveStore, name: str) -> Stream:
    try:
        return live.get(name)
    except NotFound:
        raise ApiError(404, "not_found", f"no stream called {name}") from None


@router.post("/streams", status_code=201, responses=ERRORS, summary="Watch a camera")
def create_stream(body: StreamCreate, request: Request, store: StoreDep, settings: SettingsDep, _: WriteAccess) -> Any:
    name = check_name(body.name)
    allow = [*settings.live.allow_cameras, *settings.scheduler.allow_private_urls]
    check_live(body.url, allow, settings.live.devices)
    opts = WatchOptions.parse(body.options)
    if opts.webhook_url:
        check_url(opts.webhook_url, allow)
    live = LiveStore(store)
    try:
        live.get(name)
        raise ApiError(409, "conflict", f"a stream named '{name}' exists already")
    except NotFound:
        pass
    try:
        stream = live.upsert_stream(name, body.url, opts.model_dump())
    except IntegrityError:  # created by a concurrent request
        raise ApiError(409, "conflict", f"a stream named '{name}' exists already") from None
    _start(request, settings, stream.id)
    return _public(stream)


@router.get("/streams", responses=ERRORS, summary="List cameras and their status")
def list_streams(store: StoreDep, _: ReadAccess) -> Any:
    live = LiveStore(store)
    return {"items": [_public(s) for s in live.all()]}


@router.get("/streams/{name}", responses=ERRORS, summary="A camera's status, recent segments, gaps, digests")
def get_stream(name: str, store: StoreDep, _: ReadAccess) -> Any:
    live = LiveStore(store)
    return _public(_get(live, name), live)


@router.post("/streams/{name}/pause", responses=ERRORS, summary="Stop watching (keeps the stream)")
def pause_stream(name: str, store: StoreDep, _: WriteAccess) -> Any:
    live = LiveStore(store)
    return _public(live.set_desired(_get(live, name).id, "paused"))


@router.post("/streams/{name}/resume", responses=ERRORS, summary="Watch again")
def resume_stream(name: str, request: Request, store: StoreDep, settings: SettingsDep, _: WriteAccess) -> Any:
    live = LiveStore(store)
    stream = live.set_desired(_get(live, name).id, "active")
    _start(request, settings, stream.id)
    return _public(stream)


@router.delete("/streams/{name}", status_code=204, responses=ERRORS, summary="Stop and remove a camera")
def delete_stream(name: str, store: StoreDep, _: WriteAccess) -> Response:
    live = LiveStore(store)
    live.set_desired(_get(live, name).id, "deleted")
    return Response(status_code=204)
