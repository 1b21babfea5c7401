"""Stopping the rest of a job without touching segments other workers are describing (a mixin of the
SQL store): a budget cap reached under Celery cancels what has not started; a running segment keeps
its result, and what it cost is stored."""

from __future__ import annotations

from sqlalchemy import update

from worker.adapters.stores.engine import StoreBase
from worker.adapters.stores.schema import SegmentDbRow
from worker.core.states import SegmentState


class StopsMixin(StoreBase):
    def cancel_pending(self, job_id: str, reason: str) -> int:
        """Segments not yet started (``pending``) end as cancelled with ``reason``; running ones finish."""
        q = update(SegmentDbRow).where(SegmentDbRow.job_id == job_id, SegmentDbRow.state == SegmentState.PENDING)
        with self.session() as s, s.begin():
            res = s.execute(q.values(state=SegmentState.CANCELLED, error=reason[:4000], updated_at=self.db_now()))
            return int(res.rowcount)  # type: ignore[attr-defined]
