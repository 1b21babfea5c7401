"""Stuck work: live jobs (queued or running) on which nothing changed for longer than their deadline.

The deadline defaults to ``worker.task_time_limit_s``: by then every segment task that was running has
ended or been killed, so a job idle that long waits for a worker, a lost message or the reaper.
``framescribe jobs list --stuck`` and the ``framescribe_jobs_stuck`` metric use this one query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select

from worker.adapters.stores.schema import JobRow, SegmentDbRow

LIVE = ("queued", "running")


@dataclass(frozen=True)
class StuckJob:
    id: str
    state: str
    source_name: str
    segment_count: int
    idle_s: float


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def stuck_jobs(store: Any, older_than_s: float, *, limit: int = 100) -> list[StuckJob]:
    """Live jobs idle (job row and every segment row) for more than ``older_than_s``, longest idle first."""
    last = (
        select(SegmentDbRow.job_id, func.max(SegmentDbRow.updated_at).label("last"))
        .join(JobRow, JobRow.id == SegmentDbRow.job_id)
        .where(JobRow.state.in_(LIVE))
        .group_by(SegmentDbRow.job_id)
        .subquery()
    )
    cutoff = store.db_now(-older_than_s)  # the clock updated_at is written with (the database's)
    q = (
        select(JobRow.id, JobRow.state, JobRow.source_name, JobRow.segment_count, JobRow.updated_at, last.c.last)
        .outerjoin(last, last.c.job_id == JobRow.id)
        .where(JobRow.state.in_(LIVE), JobRow.updated_at < cutoff, or_(last.c.last.is_(None), last.c.last < cutoff))
        .order_by(JobRow.updated_at)
        .limit(limit)
    )
    with store.session() as s:
        rows = s.execute(q).all()
        now = store.db_time(s)
    found = []
    for job_id, state, name, count, updated, seg_last in rows:
        latest = max(_utc(updated), _utc(seg_last)) if seg_last is not None else _utc(updated)
        found.append(StuckJob(str(job_id), str(state), str(name), int(count), (now - latest).total_seconds()))
    return found


def count_stuck(store: Any, older_than_s: float) -> int:
    return len(stuck_jobs(store, older_than_s, limit=10_000))


def print_stuck(out: Any, store: Any, older_than_s: float, limit: int) -> None:
    """The ``jobs list --stuck`` table, with what to do next."""
    from rich.table import Column, Table

    jobs = stuck_jobs(store, older_than_s, limit=limit)
    if not jobs:
        out.print(f"no stuck jobs (none queued or running without progress for {older_than_s:g} s)", markup=False)
        return
    table = Table(Column("id", no_wrap=True, min_width=32), "state", Column("source", overflow="fold"), "segments",
                  "idle")  # fmt: skip
    for job in jobs:
        table.add_row(job.id, job.state, job.source_name, str(job.segment_count), f"{job.idle_s:.0f} s")
    out.print(table)
    out.print(
        f"{len(jobs)} stuck job(s): check `framescribe doctor` (workers, beat), then `framescribe retry JOB_ID` "
        "or `framescribe cancel JOB_ID`",
        markup=False,
    )
