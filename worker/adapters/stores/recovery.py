"""Result store: reopening a job that ended without segments (the lease-based recovery queries are in leases.py)."""

from __future__ import annotations

from sqlalchemy import update

from worker.adapters.stores.engine import StoreBase
from worker.adapters.stores.schema import JobRow


class RecoveryMixin(StoreBase):
    """Reopening a job for a retry."""

    def reopen_job(self, job_id: str) -> bool:
        """A job that ended without segments (planning failed) back to queued, for a retry."""
        with self.session() as s, s.begin():
            res = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.segment_count == 0, JobRow.state.in_(("failed", "queued")))
                .values(
                    state="queued",
                    summary_state="none",
                    summary=None,
                    error=None,
                    finished_at=None,
                    updated_at=self.db_now(),
                )
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]
