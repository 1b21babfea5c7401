"""Result store: the summary claim, finishing, cancelling, retrying and deleting jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, exists, select, update

from worker.adapters.stores.engine import now
from worker.adapters.stores.jobs import JobsMixin
from worker.adapters.stores.schema import FrameDbRow, JobRow, SegmentDbRow
from worker.core.models import JobSummary
from worker.core.states import ACTIVE_SEGMENT as ACTIVE
from worker.core.states import TERMINAL_JOB


class FinishingMixin(JobsMixin):
    """The end of a job: exactly one summary, cancels, retries."""

    def claim_summary(self, job_id: str) -> bool:
        """Atomically claim the right to summarise: only once, and only when no segment is active."""
        active = exists().where(SegmentDbRow.job_id == job_id, SegmentDbRow.state.in_(ACTIVE))
        with self.session() as s, s.begin():
            res = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.summary_state == "none", ~active)
                .values(summary_state="claimed", updated_at=now())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def finish_job(self, job_id: str, summary: JobSummary, state: str, error: str | None = None) -> None:
        with self.session() as s, s.begin():
            values: dict[str, Any] = {
                "summary": summary.as_dict(),
                "summary_state": "done",
                "updated_at": now(),
                "finished_at": now(),
            }
            if error is not None:
                values["error"] = error[:4000]
            s.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.state != "cancelled").values(state=state, **values)
            )
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.state == "cancelled").values(**values))

    def cancel_job(self, job_id: str) -> int:
        """Cancel queued/running segments (finished ones stay); returns how many were cancelled."""
        self.get_job(job_id)
        with self.session() as s, s.begin():
            res = s.execute(
                update(SegmentDbRow)
                .where(SegmentDbRow.job_id == job_id, SegmentDbRow.state.in_(ACTIVE))
                .values(state="cancelled", updated_at=now())
            )
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.state.not_in(TERMINAL_JOB))
                .values(state="cancelled", updated_at=now(), finished_at=now())
            )
            return int(res.rowcount)  # type: ignore[attr-defined]

    def reset_failed(self, job_id: str) -> list[int]:
        """Failed (and cancelled) segments back to pending for a retry; reopens the job's summary."""
        with self.session() as s, s.begin():
            idx = list(
                s.scalars(
                    select(SegmentDbRow.index).where(
                        SegmentDbRow.job_id == job_id, SegmentDbRow.state.in_(("failed", "cancelled"))
                    )
                )
            )
            if idx:
                s.execute(
                    update(SegmentDbRow)
                    .where(SegmentDbRow.job_id == job_id, SegmentDbRow.index.in_(idx))
                    .values(state="pending", error=None, updated_at=now())
                )
                s.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id)
                    .values(state="queued", summary_state="none", error=None, finished_at=None, updated_at=now())
                )
            return idx

    def cancel_remaining(self, job_id: str, reason: str, *, only_if_cancelled: bool = False) -> int:
        """Segments not yet finished end as cancelled with ``reason`` (a budget cap or a fatal error).

        ``only_if_cancelled`` makes it conditional, in the same statement, on the job still being
        cancelled: a stale task that saw the cancel must not undo a retry that came after it."""
        q = update(SegmentDbRow).where(SegmentDbRow.job_id == job_id, SegmentDbRow.state.in_(ACTIVE))
        if only_if_cancelled:
            q = q.where(exists().where(JobRow.id == job_id, JobRow.state == "cancelled"))
        with self.session() as s, s.begin():
            res = s.execute(q.values(state="cancelled", error=reason[:4000], updated_at=now()))
            return int(res.rowcount)  # type: ignore[attr-defined]

    def delete_job(self, job_id: str) -> None:
        self.get_job(job_id)
        with self.session() as s, s.begin():
            s.execute(delete(FrameDbRow).where(FrameDbRow.job_id == job_id))
            s.execute(delete(SegmentDbRow).where(SegmentDbRow.job_id == job_id))
            s.execute(delete(JobRow).where(JobRow.id == job_id))
