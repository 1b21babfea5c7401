"""Result store: creating, reading, listing and planning jobs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.exc import IntegrityError

from worker.adapters.stores.engine import StoreBase, now
from worker.adapters.stores.rows import to_job
from worker.adapters.stores.schema import JobRow, SegmentDbRow
from worker.core.models import Job, SegmentPlan, VideoInfo
from worker.core.states import TERMINAL_JOB
from worker.errors import NotFound


class JobsMixin(StoreBase):
    """Jobs: one transaction per write."""

    def create_job(
        self,
        source: str,
        source_name: str,
        options: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        schedule_id: str | None = None,
        webhook_url: str | None = None,
        state: str = "queued",
    ) -> tuple[Job, bool]:
        """Insert a job; with an idempotency key seen before, return the first job and False."""
        if idempotency_key:
            found = self.job_by_key(idempotency_key)
            if found:
                return found, False
        row = JobRow(
            id=uuid.uuid4().hex,
            state=state,
            source=source,
            source_name=source_name[:512],
            options=options,
            segment_count=0,
            summary_state="none",
            idempotency_key=idempotency_key,
            schedule_id=schedule_id,
            webhook_url=webhook_url,
        )
        try:
            with self.session() as s, s.begin():
                # created_at orders listings (to the µs); updated_at feeds the recovery loop's "waited
                # longer than grace" check, so it is on the database's clock like every lease
                row.created_at, row.updated_at = now(), self.db_time(s)
                s.add(row)
        except IntegrityError:
            found = self.job_by_key(idempotency_key or "")
            if found:
                return found, False
            raise
        return to_job(row), True

    def job_by_key(self, key: str) -> Job | None:
        with self.session() as s:
            row = s.scalar(select(JobRow).where(JobRow.idempotency_key == key))
            return to_job(row) if row else None

    def get_job(self, job_id: str) -> Job:
        with self.session() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"no job with id {job_id}")
            return to_job(row)

    def list_jobs(
        self,
        *,
        state: str | None = None,
        schedule_id: str | None = None,
        source: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Job]:
        """Newest first; ``before`` is a cursor (a job id) for the next page."""
        q = select(JobRow)
        if state:
            q = q.where(JobRow.state == state)
        if schedule_id:
            q = q.where(JobRow.schedule_id == schedule_id)
        if source:
            q = q.where(JobRow.source_name.contains(source))
        with self.session() as s:
            if before:
                ref = s.get(JobRow, before)
                if ref is not None:
                    q = q.where(
                        (JobRow.created_at < ref.created_at)
                        | and_(JobRow.created_at == ref.created_at, JobRow.id < ref.id)
                    )
            rows = s.scalars(q.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)).all()
            return [to_job(r) for r in rows]

    def set_job_state(
        self, job_id: str, state: str, error: str | None = None, *, only_from: Sequence[str] = ()
    ) -> bool:
        values: dict[str, Any] = {"state": state, "updated_at": self.db_now()}
        if error is not None:
            values["error"] = error[:4000]
        if state in TERMINAL_JOB:
            values["finished_at"] = self.db_now()
        q = update(JobRow).where(JobRow.id == job_id)
        if only_from:
            q = q.where(JobRow.state.in_(only_from))
        with self.session() as s, s.begin():
            return bool(s.execute(q.values(**values)).rowcount)  # type: ignore[attr-defined]

    def plan_job(self, job_id: str, video: VideoInfo, plans: Sequence[SegmentPlan]) -> None:
        """Record the video facts and one pending row per planned segment (idempotent)."""
        with self.session() as s, s.begin():
            ts = self.db_time(s)
            have = set(s.scalars(select(SegmentDbRow.index).where(SegmentDbRow.job_id == job_id)))
            for p in plans:
                if p.index in have:
                    continue
                s.add(
                    SegmentDbRow(
                        job_id=job_id,
                        index=p.index,
                        start_ms=p.start_ms,
                        end_ms=p.end_ms,
                        fps=str(p.fps),
                        kind=p.kind,
                        planned_frames=p.frame_count,
                        state="pending",
                        input_tokens=0,
                        output_tokens=0,
                        video_tokens=0,
                        latency_ms=0,
                        attempts=0,
                        frame_count=0,
                        updated_at=ts,
                    )
                )
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(video=video.as_dict(), segment_count=len(have | {p.index for p in plans}), updated_at=ts)
            )
