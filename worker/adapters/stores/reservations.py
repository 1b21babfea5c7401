"""Requests in flight under a job's caps, shared by every process that works on the job (a mixin of the
SQL store; issue 15).

``reserve_spend`` checks and reserves in one transaction that first locks the job's row (an UPDATE: a
row lock on PostgreSQL, the write lock on SQLite), so two workers never both pass the check with the
same headroom. What counts: the usage stored on the segment rows (and the summary's) plus every
reservation of the job that is still live: not expired (a worker that died stops holding its share once
its reservation expires) and of a segment not yet ended — the write that stores a segment's usage ends
its reservation in the same transaction, so a segment is never counted twice (stored and in flight)
even before ``release_spend`` deletes the row.
"""

from __future__ import annotations

from sqlalchemy import and_, delete, func, or_, select, update

from worker.adapters.stores.engine import StoreBase
from worker.adapters.stores.schema import JobRow, ReservationRow, SegmentDbRow
from worker.adapters.stores.segments import summary_spend
from worker.core.states import ACTIVE_SEGMENT

_GARBAGE_S = 86400.0  # a day


class ReservationsMixin(StoreBase):
    def reserve_spend(
        self,
        job_id: str,
        key: str,
        index: int,
        calls: int,
        video_tokens: int,
        *,
        max_calls: int | None,
        max_video_tokens: int | None,
        ttl_s: float,
    ) -> tuple[int, int] | None:
        """Add ``calls`` requests and ``video_tokens`` to reservation ``key`` (segment ``index``) and renew
        it for ``ttl_s`` when stored + live reservations + these stay within both caps: None. Else
        nothing is written and the answer is (requests, video tokens) already made or in flight."""
        ts = self.db_now()  # the database's clock: a worker's own clock never decides what is live
        r, seg = ReservationRow, SegmentDbRow
        with self.session() as s, s.begin():
            # the job row's lock serialises every reservation of the job, in any process
            s.execute(update(JobRow).where(JobRow.id == job_id).values(updated_at=JobRow.updated_at))
            # the leftovers of workers that died long ago (a lapsed one still counts for its own holder)
            s.execute(delete(r).where(r.job_id == job_id, r.expires_at < self.db_now(-_GARBAGE_S), r.id != key))
            stored_calls, stored_tokens = s.execute(
                select(
                    func.coalesce(func.sum(seg.http_attempts), 0), func.coalesce(func.sum(seg.video_tokens), 0)
                ).where(seg.job_id == job_id)
            ).one()
            extra = summary_spend(s, job_id)
            held_calls, held_tokens = s.execute(
                select(func.coalesce(func.sum(r.calls), 0), func.coalesce(func.sum(r.video_tokens), 0))
                .join(seg, and_(seg.job_id == r.job_id, seg.index == r.segment_index))
                .where(r.job_id == job_id, seg.state.in_(ACTIVE_SEGMENT), or_(r.expires_at >= ts, r.id == key))
            ).one()
            made = (
                int(stored_calls) + int(extra.get("http_attempts", 0)) + int(held_calls),
                int(stored_tokens) + int(held_tokens),
            )
            if (max_calls and made[0] + calls > max_calls) or (
                max_video_tokens and made[1] + video_tokens > max_video_tokens
            ):
                return made
            until = self.db_now(ttl_s)
            res = s.execute(
                update(r)
                .where(r.id == key)
                .values(calls=r.calls + calls, video_tokens=r.video_tokens + video_tokens, expires_at=until)
            )
            if not res.rowcount:  # type: ignore[attr-defined]
                s.add(ReservationRow(id=key, job_id=job_id, segment_index=index, calls=calls,
                                     video_tokens=video_tokens, expires_at=until))  # fmt: skip
            return None

    def release_spend(self, key: str) -> None:
        """The reservation's segment is stored (saved or failed), or it never sent a request: forget it."""
        with self.session() as s, s.begin():
            s.execute(delete(ReservationRow).where(ReservationRow.id == key))
