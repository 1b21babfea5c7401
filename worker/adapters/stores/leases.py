"""Result store: segment leases, what the recovery loop re-queues, and the webhook outbox (issue 16).

A running segment carries ``lease_owner``/``lease_until``, renewed by its task's heartbeat; the recovery
loop (worker/recovery.py) asks here for work whose lease expired (or that waits with no owner) and for
webhooks due in the outbox. A summary's lease is in ``finishing.py`` (with the claim)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, exists, or_, select, update

from worker.adapters.stores.engine import StoreBase
from worker.adapters.stores.schema import JobRow, OutboxRow, SegmentDbRow
from worker.adapters.stores.segments import segment_update
from worker.core.states import ACTIVE_SEGMENT as ACTIVE
from worker.core.states import LIVE_JOB


@dataclass(frozen=True, slots=True)
class Orphan:
    """Work nobody holds: ``kind`` is ``segment`` (``index`` set), ``plan``, ``finish`` or ``webhook``."""

    kind: str
    job_id: str
    index: int = -1
    state: str = ""
    attempts: int = 0


class LeasesMixin(StoreBase):
    """Segment leases, orphan queries and the webhook outbox."""

    def renew_segment_lease(self, job_id: str, index: int, owner: str, lease_s: float) -> bool:
        """Take or extend a running segment's lease; False when the row is no longer running."""
        with self.session() as s, s.begin():
            res = s.execute(
                segment_update(job_id, index, ("running",)).values(lease_owner=owner, lease_until=self.db_now(lease_s))
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def orphans(self, lease_s: float, grace_s: float, *, limit: int = 500) -> list[Orphan]:
        """Live work no worker holds: running segments whose lease expired (or, never leased, untouched for
        ``lease_s``); pending segments and unplanned jobs older than ``grace_s`` (the caller checks the
        broker for their messages); jobs with every segment ended and no summary, or whose summary lease
        expired; webhooks due in the outbox."""
        ts, idle, waiting = self.db_now(), self.db_now(-lease_s), self.db_now(-grace_s)
        lease_gone = or_(
            SegmentDbRow.lease_until < ts,
            and_(SegmentDbRow.lease_until.is_(None), SegmentDbRow.updated_at < idle),
        )
        stale = or_(
            and_(SegmentDbRow.state == "running", lease_gone),
            and_(SegmentDbRow.state == "pending", SegmentDbRow.updated_at < waiting),
        )
        active = exists().where(SegmentDbRow.job_id == JobRow.id, SegmentDbRow.state.in_(ACTIVE))
        summary_free = or_(
            JobRow.summary_state == "none",
            and_(
                JobRow.summary_state == "claimed",
                or_(
                    JobRow.summary_lease_until < ts,
                    and_(JobRow.summary_lease_until.is_(None), JobRow.updated_at < idle),
                ),
            ),
        )
        with self.session() as s:
            segs = s.execute(
                select(SegmentDbRow.job_id, SegmentDbRow.index, SegmentDbRow.state, SegmentDbRow.attempts)
                .join(JobRow, JobRow.id == SegmentDbRow.job_id)
                .where(SegmentDbRow.state.in_(ACTIVE), stale, JobRow.state.in_(LIVE_JOB))
                .order_by(SegmentDbRow.updated_at)
                .limit(limit)
            ).all()
            plans = s.scalars(
                select(JobRow.id)
                .where(
                    JobRow.state == "queued",
                    JobRow.segment_count == 0,
                    JobRow.updated_at < waiting,
                )
                .limit(limit)
            ).all()
            finishes = s.scalars(
                select(JobRow.id)
                .where(
                    # failed: set by jobs.fail before its summary (a finisher that died there)
                    JobRow.state.in_(("queued", "running", "cancelled", "failed")),
                    or_(JobRow.segment_count > 0, JobRow.state.in_(("cancelled", "failed"))),
                    summary_free,
                    ~active,
                )
                .limit(limit)
            ).all()
            hooks = s.scalars(
                select(OutboxRow.job_id).where(OutboxRow.state == "pending", OutboxRow.next_at < ts).limit(limit)
            ).all()
        return (
            [Orphan("segment", str(j), int(i), str(st), int(a)) for j, i, st, a in segs]
            + [Orphan("plan", str(j)) for j in plans]
            + [Orphan("finish", str(j)) for j in finishes]
            + [Orphan("webhook", str(j)) for j in hooks]
        )

    # -- the webhook outbox ---------------------------------------------------------------------
    def claim_webhook(self, job_id: str, hold_s: float) -> tuple[str, int] | None:
        """Take the job's due outbox row for one attempt (held ``hold_s``): ``(delivery_id, attempt)``;
        None when there is none due (sent, given up, or another sender holds it)."""
        with self.session() as s, s.begin():
            row = s.execute(
                select(OutboxRow.delivery_id, OutboxRow.attempts).where(
                    OutboxRow.job_id == job_id, OutboxRow.state == "pending", OutboxRow.next_at <= self.db_now()
                )
            ).first()
            if row is None:
                return None
            delivery_id, attempt = str(row[0]), int(row[1]) + 1
            res = s.execute(
                update(OutboxRow)
                .where(OutboxRow.delivery_id == delivery_id, OutboxRow.attempts == attempt - 1)
                .values(attempts=attempt, next_at=self.db_now(hold_s))
            )
            if not res.rowcount:  # type: ignore[attr-defined]
                return None
            return delivery_id, attempt

    def webhook_done(
        self, delivery_id: str, state: str, error: str | None = None, retry_in_s: float | None = None
    ) -> None:
        """Record an attempt's outcome: ``sent``, ``given_up``, or ``pending`` again ``retry_in_s`` from now
        (the database's now)."""
        values: dict[str, object] = {"state": state, "last_error": (error or "")[:2000] or None}
        if retry_in_s is not None:
            values["next_at"] = self.db_now(retry_in_s)
        with self.session() as s, s.begin():
            s.execute(update(OutboxRow).where(OutboxRow.delivery_id == delivery_id).values(**values))

    def outbox(self, job_id: str) -> list[tuple[str, str, int]]:
        """The job's outbox rows as ``(delivery_id, state, attempts)``."""
        with self.session() as s:
            rows = s.execute(
                select(OutboxRow.delivery_id, OutboxRow.state, OutboxRow.attempts).where(OutboxRow.job_id == job_id)
            ).all()
        return [(str(d), str(st), int(a)) for d, st, a in rows]
