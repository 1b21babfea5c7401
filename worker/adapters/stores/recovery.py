"""Result store: what the recovery loop (reaper) looks for and reopens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, select, update

from worker.adapters.stores.engine import StoreBase, now
from worker.adapters.stores.schema import JobRow, SegmentDbRow
from worker.core.states import ACTIVE_SEGMENT as ACTIVE


class RecoveryMixin(StoreBase):
    """Stale work: segments, unplanned or unfinished jobs, abandoned summary claims."""

    def stale_segments(self, older_than: datetime, *, limit: int = 500) -> list[tuple[str, int, str]]:
        """``(job_id, index, state)`` of pending/running segments of live jobs untouched since ``older_than``."""
        with self.session() as s:
            rows = s.execute(
                select(SegmentDbRow.job_id, SegmentDbRow.index, SegmentDbRow.state)
                .join(JobRow, JobRow.id == SegmentDbRow.job_id)
                .where(
                    SegmentDbRow.state.in_(ACTIVE),
                    SegmentDbRow.updated_at < older_than,
                    JobRow.state.in_(("queued", "running")),
                )
                .order_by(SegmentDbRow.updated_at)
                .limit(limit)
            ).all()
        return [(str(j), int(i), str(st)) for j, i, st in rows]

    def stale_jobs(self, older_than: datetime, *, limit: int = 500) -> list[tuple[str, str]]:
        """Live jobs a lost message left behind, as ``(job_id, need)``: ``plan`` when still unplanned since
        ``older_than``; ``finish`` when every segment is terminal but no summary was claimed."""
        active = exists().where(SegmentDbRow.job_id == JobRow.id, SegmentDbRow.state.in_(ACTIVE))
        with self.session() as s:
            unplanned = s.scalars(
                select(JobRow.id)
                .where(JobRow.state == "queued", JobRow.segment_count == 0, JobRow.updated_at < older_than)
                .limit(limit)
            ).all()
            unfinished = s.scalars(
                select(JobRow.id)
                .where(
                    JobRow.state.in_(("queued", "running", "cancelled")),
                    JobRow.segment_count > 0,
                    JobRow.summary_state == "none",
                    ~active,
                )
                .limit(limit)
            ).all()
        return [(str(j), "plan") for j in unplanned] + [(str(j), "finish") for j in unfinished]

    def reopen_job(self, job_id: str) -> bool:
        """A job that ended without segments (planning failed) back to queued, for a retry."""
        with self.session() as s, s.begin():
            res = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.segment_count == 0, JobRow.state.in_(("failed", "queued")))
                .values(
                    state="queued", summary_state="none", summary=None, error=None, finished_at=None, updated_at=now()
                )
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def reopen_stale_summaries(self, older_than: datetime) -> int:
        """Summary claims older than ``older_than`` whose claimer died before storing it: claimable again."""
        with self.session() as s, s.begin():
            res = s.execute(
                update(JobRow)
                .where(JobRow.summary_state == "claimed", JobRow.updated_at < older_than)
                .values(summary_state="none", updated_at=now())
            )
            return int(res.rowcount)  # type: ignore[attr-defined]
