"""Result store: the summary claim, finishing, cancelling, retrying and deleting jobs."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, update

from worker.adapters.stores.jobs import JobsMixin
from worker.adapters.stores.schema import FrameDbRow, JobRow, OutboxRow, SegmentDbRow
from worker.core.models import JobSummary
from worker.core.states import ACTIVE_SEGMENT as ACTIVE
from worker.core.states import TERMINAL_JOB


class FinishingMixin(JobsMixin):
    """The end of a job: exactly one summary, cancels, retries."""

    def claim_summary(self, job_id: str, owner: str | None = None, lease_s: float = 60.0) -> bool:
        """Claim the right to summarise as a lease: only when no segment is active, and only when nobody
        holds it or the holder's lease expired (a finisher that died mid-summary is taken over)."""
        active = exists().where(SegmentDbRow.job_id == job_id, SegmentDbRow.state.in_(ACTIVE))
        ts = self.db_now()
        expired = or_(
            JobRow.summary_lease_until < ts,
            and_(JobRow.summary_lease_until.is_(None), JobRow.updated_at < self.db_now(-lease_s)),
        )
        free = or_(JobRow.summary_state == "none", and_(JobRow.summary_state == "claimed", expired))
        with self.session() as s, s.begin():
            res = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, free, ~active)
                .values(
                    summary_state="claimed",
                    summary_owner=owner,
                    summary_lease_until=self.db_now(lease_s),
                    updated_at=ts,
                )
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def renew_summary(self, job_id: str, owner: str, lease_s: float) -> bool:
        """Extend the summary lease ``owner`` holds; False when it was lost (taken over or finished)."""
        with self.session() as s, s.begin():
            res = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.summary_state == "claimed", JobRow.summary_owner == owner)
                .values(summary_lease_until=self.db_now(lease_s))
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def finish_job(
        self,
        job_id: str,
        summary: JobSummary,
        state: str,
        error: str | None = None,
        *,
        owner: str | None = None,
    ) -> bool:
        """Store the summary and, for a job with a webhook URL, its outbox row, in one transaction; only
        while the summary claim is still ``owner``'s (when given). False: the lease was lost, nothing
        written (another finisher took over)."""
        ts = self.db_now()
        values: dict[str, Any] = {
            "summary": summary.as_dict(),
            "summary_state": "done",
            "summary_lease_until": None,
            "updated_at": ts,
            "finished_at": ts,
        }
        if error is not None:
            values["error"] = error[:4000]
        mine = [JobRow.id == job_id]
        if owner is not None:
            mine += [JobRow.summary_state == "claimed", JobRow.summary_owner == owner]
        with self.session() as s, s.begin():
            n = s.execute(update(JobRow).where(*mine, JobRow.state != "cancelled").values(state=state, **values))
            m = s.execute(update(JobRow).where(*mine, JobRow.state == "cancelled").values(**values))
            if not (n.rowcount or m.rowcount):  # type: ignore[attr-defined]
                return False
            if s.scalar(select(JobRow.webhook_url).where(JobRow.id == job_id)):
                s.execute(delete(OutboxRow).where(OutboxRow.job_id == job_id))  # a retried job's earlier one
                due = self.db_time(s)
                s.add(OutboxRow(delivery_id=uuid.uuid4().hex, job_id=job_id, created_at=due, state="pending",
                                attempts=0, next_at=due))  # fmt: skip
        return True

    def cancel_job(self, job_id: str) -> int:
        """Cancel queued/running segments (finished ones stay); returns how many were cancelled."""
        self.get_job(job_id)
        with self.session() as s, s.begin():
            res = s.execute(
                update(SegmentDbRow)
                .where(SegmentDbRow.job_id == job_id, SegmentDbRow.state.in_(ACTIVE))
                .values(state="cancelled", updated_at=self.db_now())
            )
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.state.not_in(TERMINAL_JOB))
                .values(state="cancelled", updated_at=self.db_now(), finished_at=self.db_now())
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
                    .values(state="pending", error=None, updated_at=self.db_now())
                )
                s.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id)
                    .values(
                        state="queued", summary_state="none", error=None, finished_at=None, updated_at=self.db_now()
                    )
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
            res = s.execute(q.values(state="cancelled", error=reason[:4000], updated_at=self.db_now()))
            return int(res.rowcount)  # type: ignore[attr-defined]

    def delete_job(self, job_id: str) -> None:
        self.get_job(job_id)
        with self.session() as s, s.begin():
            s.execute(delete(OutboxRow).where(OutboxRow.job_id == job_id))
            s.execute(delete(FrameDbRow).where(FrameDbRow.job_id == job_id))
            s.execute(delete(SegmentDbRow).where(SegmentDbRow.job_id == job_id))
            s.execute(delete(JobRow).where(JobRow.id == job_id))
