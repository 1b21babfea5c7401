"""``/v1/schedules``: recurring jobs (cron or interval) over a watched folder or a URL; run now."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from scheduler import intake
from scheduler.api.deps import (
    EnqueuerDep,
    MirrorDep,
    ReadAccess,
    SchedulesDep,
    SettingsDep,
    StoreDep,
    WriteAccess,
)
from scheduler.api.models import (
    ErrorBody,
    RunAccepted,
    ScheduleCreate,
    SchedulePublic,
    ScheduleSource,
    SchedulesPublic,
    ScheduleUpdate,
)
from scheduler.enqueue import QueueUnavailable
from scheduler.schedules import FsSchedule, ScheduleMirror, next_run_at
from worker.adapters.stores.schedules import Schedule, ScheduleStore
from worker.adapters.stores.sql import SqlResultStore
from worker.config import Settings
from worker.core.newfiles import check_glob
from worker.errors import PlanError, SourceError
from worker.options import JobOptions
from worker.sources import check_url

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])

SCHEDULE_ID = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$", description="A schedule id (32 hex characters).")]
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422, 503)}


def checked_values(
    settings: Settings,
    *,
    name: str,
    cron: str | None,
    timezone: str,
    interval_s: float | None,
    source: ScheduleSource,
    options: JobOptions,
    webhook_url: str | None,
    enabled: bool,
) -> dict[str, Any]:
    """Validate a whole schedule (the timing, the source, the webhook) into store values."""
    if (cron is None) == (interval_s is None):
        raise PlanError("give exactly one of cron or interval_s", field="cron")
    timing = FsSchedule(cron, timezone, interval_s)
    if (source.folder is None) == (source.url is None):
        raise PlanError("the source needs exactly one of folder or url", field="source")
    if source.folder is not None:
        kind, where = "folder", str(intake.check_folder(source.folder, settings))
        check_glob(source.glob)
    else:
        assert source.url is not None
        try:
            check_url(source.url, intake.url_allow(settings))
        except SourceError as exc:
            raise SourceError(exc.message, field="source.url") from None
        kind, where = "url", source.url
    if webhook_url:
        intake.check_webhook(webhook_url, settings)
    return {
        "name": name,
        "enabled": enabled,
        "cron": timing.cron,
        "timezone": timezone,
        "interval_s": interval_s,
        "source_kind": kind,
        "source": where,
        "glob": source.glob,
        "settle_s": source.settle_s,
        "max_files_per_run": source.max_files_per_run,
        "options": options.stored(),
        "webhook_url": webhook_url,
    }


def source_of(s: Schedule) -> ScheduleSource:
    if s.source_kind == "folder":
        return ScheduleSource(folder=s.source, glob=s.glob, settle_s=s.settle_s, max_files_per_run=s.max_files_per_run)
    return ScheduleSource(url=s.source)


def public(s: Schedule, store: SqlResultStore, mirror: ScheduleMirror | None, recent: int = 10) -> dict[str, Any]:
    engine_last = None
    if mirror is not None:
        try:
            engine_last = mirror.last_run_at(s.id)
        except Exception:  # Redis down: fall back to the database's view of the last run
            engine_last = None
    jobs = store.list_jobs(schedule_id=s.id, limit=recent)
    src: dict[str, Any] = {"kind": s.source_kind}
    src |= source_of(s).model_dump(exclude_none=True) if s.source_kind == "folder" else {"url": s.source}
    return SchedulePublic(
        id=s.id,
        name=s.name,
        enabled=s.enabled,
        cron=s.cron,
        timezone=s.timezone,
        interval_s=s.interval_s,
        source=src,
        options=s.options,
        webhook_url=s.webhook_url,
        created_at=s.created_at,
        updated_at=s.updated_at,
        last_run_at=s.last_run_at,
        next_run_at=next_run_at(s, engine_last or s.last_run_at),
        last_error=s.last_error,
        run_count=s.run_count,
        jobs_created=s.jobs_created,
        recent_jobs=[
            {"id": j.id, "state": j.state, "source_name": j.source_name, "created_at": j.created_at} for j in jobs
        ],
        links={
            "self": f"/v1/schedules/{s.id}",
            "run": f"/v1/schedules/{s.id}/run",
            "jobs": f"/v1/jobs?schedule_id={s.id}",
        },
    ).model_dump(mode="json")


def _mirror_put(mirror: ScheduleMirror | None, s: Schedule) -> None:
    if mirror is None:
        return
    try:
        mirror.put(s)
    except Exception as exc:
        name = type(exc).__name__
        raise QueueUnavailable(f"the schedule engine (Redis) is not reachable ({name}); try again") from None


@router.post("", status_code=201, response_model=SchedulePublic, responses=ERRORS, summary="Create a schedule")
def create(
    body: ScheduleCreate,
    settings: SettingsDep,
    store: StoreDep,
    schedules: SchedulesDep,
    mirror: MirrorDep,
    _: WriteAccess,
) -> dict[str, Any]:
    values = checked_values(settings, **body.model_dump(exclude={"source", "options"}), source=body.source,
                            options=body.options)  # fmt: skip
    s = schedules.create(**values)
    try:
        _mirror_put(mirror, s)
    except QueueUnavailable:
        schedules.delete(s.id)
        raise
    return public(s, store, mirror)


@router.get("", response_model=SchedulesPublic, responses=ERRORS, summary="List schedules")
def list_schedules(
    store: StoreDep,
    schedules: SchedulesDep,
    mirror: MirrorDep,
    _: ReadAccess,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")] = None,
) -> dict[str, Any]:
    rows = schedules.page(limit=limit, before=cursor)
    return {
        "items": [public(s, store, mirror, recent=3) for s in rows],
        "next_cursor": rows[-1].id if len(rows) == limit else None,
    }


@router.get("/{schedule_id}", response_model=SchedulePublic, responses=ERRORS,
            summary="One schedule: last and next run, the jobs it made")  # fmt: skip
def get_schedule(
    schedule_id: SCHEDULE_ID, store: StoreDep, schedules: SchedulesDep, mirror: MirrorDep, _: ReadAccess
) -> dict[str, Any]:
    return public(schedules.get(schedule_id), store, mirror, recent=20)


@router.patch("/{schedule_id}", response_model=SchedulePublic, responses=ERRORS, summary="Change a schedule")
def update(
    schedule_id: SCHEDULE_ID,
    body: ScheduleUpdate,
    settings: SettingsDep,
    store: StoreDep,
    schedules: SchedulesDep,
    mirror: MirrorDep,
    _: WriteAccess,
) -> dict[str, Any]:
    cur = schedules.get(schedule_id)
    given = body.model_dump(exclude_unset=True)
    if "cron" in given and given["cron"] is not None:
        given.setdefault("interval_s", None)
    if "interval_s" in given and given["interval_s"] is not None:
        given.setdefault("cron", None)
    merged: dict[str, Any] = {
        "name": cur.name,
        "cron": cur.cron,
        "timezone": cur.timezone,
        "interval_s": cur.interval_s,
        "webhook_url": cur.webhook_url,
        "enabled": cur.enabled,
    }
    merged |= {k: v for k, v in given.items() if k not in ("source", "options")}
    if merged["name"] is None or merged["timezone"] is None or merged["enabled"] is None:
        raise PlanError("name, timezone and enabled cannot be null", field="name")
    values = checked_values(
        settings,
        **merged,
        source=body.source if body.source is not None else source_of(cur),
        options=body.options if body.options is not None else JobOptions.parse(cur.options),
    )
    new = schedules.update(schedule_id, **values)
    _mirror_put(mirror, new)
    return public(new, store, mirror)


@router.delete("/{schedule_id}", status_code=204, responses=ERRORS, summary="Delete a schedule (its jobs stay)")
def delete(schedule_id: SCHEDULE_ID, schedules: SchedulesDep, mirror: MirrorDep, _: WriteAccess) -> Response:
    schedules.get(schedule_id)
    if mirror is not None:
        try:
            mirror.remove(schedule_id)
        except Exception as exc:
            raise QueueUnavailable(f"the schedule engine (Redis) is not reachable ({type(exc).__name__})") from None
    schedules.delete(schedule_id)
    return Response(status_code=204)


@router.post("/{schedule_id}/run", status_code=202, response_model=RunAccepted, responses=ERRORS,
             summary="Run a schedule now (also when disabled)")  # fmt: skip
async def run_now(
    schedule_id: SCHEDULE_ID, schedules: SchedulesDep, enqueuer: EnqueuerDep, _: WriteAccess
) -> dict[str, Any]:
    await run_in_threadpool(_exists, schedules, schedule_id)
    task_id = await run_in_threadpool(enqueuer.fire_schedule, schedule_id)
    return {"schedule_id": schedule_id, "task_id": task_id, "status": "queued"}


def _exists(schedules: ScheduleStore, schedule_id: str) -> None:
    schedules.get(schedule_id)
