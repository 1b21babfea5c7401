"""Result store: claiming, saving and failing segments; reading segments, frames and usage."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any

from sqlalchemy import Table, Update, delete, func, insert, select, update
from sqlalchemy.orm import Session

from worker.adapters.stores.engine import StoreBase
from worker.adapters.stores.rows import to_segment
from worker.adapters.stores.schema import FrameDbRow, JobRow, SegmentDbRow
from worker.core.models import Description, FrameRef, SegmentRow, Usage
from worker.core.states import ACTIVE_SEGMENT as ACTIVE
from worker.core.usage import summary_part, usage_totals
from worker.errors import NotFound

SEGMENTS: Table = SegmentDbRow.__table__  # type: ignore[assignment]  # mapped classes' tables
FRAMES: Table = FrameDbRow.__table__  # type: ignore[assignment]


def segment_update(job_id: str, index: int, states: Collection[str] | None = None) -> Update:
    """The UPDATE of one segment's row, only while it is in one of ``states`` (None: any state). A Core
    statement on the table (no ORM objects to keep in step): a third of the ORM bulk update's CPU."""
    c = SEGMENTS.c
    q = update(SEGMENTS).where(c.job_id == job_id, c.index == index)
    return q if states is None else q.where(c.state.in_(states))


def frame_values(job_id: str, index: int, f: FrameRef) -> dict[str, Any]:
    return {"job_id": job_id, "segment_index": index, "n": f.n, "t_ms": f.t_ms, "path": f.path, "width": f.width,
            "height": f.height, "size_bytes": f.size_bytes}  # fmt: skip


def added(spent: Usage) -> dict[str, Any]:
    """Column values adding ``spent`` to a segment's usage (what earlier attempts cost stays counted)."""
    return {
        "input_tokens": SegmentDbRow.input_tokens + spent.input_tokens,
        "output_tokens": SegmentDbRow.output_tokens + spent.output_tokens,
        "video_tokens": SegmentDbRow.video_tokens + spent.video_tokens,
        "http_attempts": SegmentDbRow.http_attempts + spent.http_attempts,
    }


def summary_spend(s: Session, job_id: str) -> dict[str, Any]:
    """What the job's model summary spent (``usage.summary`` of its stored summary: calls, requests,
    tokens), counted with the segments' usage and under the caps; {} before one."""
    return summary_part(s.scalar(select(JobRow.summary).where(JobRow.id == job_id)))


class SegmentsMixin(StoreBase):
    """Segments and their frames: the first writer wins."""

    def claim_segment(self, job_id: str, index: int) -> bool:
        """pending|failed|running -> running, attempts + 1. False when done, static or cancelled."""
        with self.session() as s, s.begin():
            res = s.execute(
                segment_update(job_id, index, ("pending", "running", "failed")).values(
                    state="running",
                    attempts=SegmentDbRow.attempts + 1,
                    updated_at=self.db_now(),
                    lease_owner=None,  # a fresh claim: an earlier attempt's expired lease no longer counts
                    lease_until=None,
                )
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def save_segment(
        self,
        job_id: str,
        index: int,
        desc: Description,
        frames: Sequence[FrameRef],
        *,
        state: str = "done",
        reused_from: int | None = None,
    ) -> bool:
        """Store a described segment and its frames in one transaction; the first writer wins."""
        u = desc.usage
        with self.session() as s, s.begin():
            res = s.execute(
                # only a claimed (or just planned) row; never over failed/done
                segment_update(job_id, index, ACTIVE).values(
                    state=state,
                    description=desc.text,
                    structured=desc.structured,
                    describer=desc.describer,
                    model=desc.model,
                    **added(u),  # tokens an earlier failed attempt was billed for stay counted
                    request_id=u.request_id,
                    latency_ms=u.latency_ms,
                    error=None,
                    frame_count=len(frames),
                    reused_from=reused_from,
                    flags=list(desc.flags),
                    updated_at=self.db_now(),
                )
            )
            if not res.rowcount:  # type: ignore[attr-defined]
                return False
            s.execute(delete(FRAMES).where(FRAMES.c.job_id == job_id, FRAMES.c.segment_index == index))
            if frames:  # one executemany, no ORM objects
                s.execute(insert(FRAMES), [frame_values(job_id, index, f) for f in frames])
        return True

    def fail_segment(self, job_id: str, index: int, error: str, spent: Usage | None = None) -> bool:
        """``spent``: what the failed calls cost (requests sent, tokens of replies lost after sending)."""
        more = added(spent) if spent is not None else {}
        with self.session() as s, s.begin():
            q = segment_update(job_id, index, ACTIVE)
            res = s.execute(q.values(state="failed", error=error[:4000], updated_at=self.db_now(), **more))
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def add_spent(self, job_id: str, index: int, spent: Usage) -> None:
        """Add what failed requests cost to a segment that will be tried again (a Celery retry)."""
        with self.session() as s, s.begin():
            s.execute(segment_update(job_id, index).values(**added(spent)))

    def segment_state(self, job_id: str, index: int) -> str | None:
        with self.session() as s:
            return s.scalar(
                select(SegmentDbRow.state).where(SegmentDbRow.job_id == job_id, SegmentDbRow.index == index)
            )

    def segment_rows(self, job_id: str, *, batch: int = 500) -> Iterator[SegmentRow]:
        """Stream the job's segments in order, ``batch`` rows at a time (flat memory for long jobs)."""
        last = -1
        while True:
            with self.session() as s:
                rows = s.scalars(
                    select(SegmentDbRow)
                    .where(SegmentDbRow.job_id == job_id, SegmentDbRow.index > last)
                    .order_by(SegmentDbRow.index)
                    .limit(batch)
                ).all()
            if not rows:
                return
            for r in rows:
                yield to_segment(r)
            last = rows[-1].index

    def segment(self, job_id: str, index: int) -> SegmentRow:
        with self.session() as s:
            row = s.scalar(select(SegmentDbRow).where(SegmentDbRow.job_id == job_id, SegmentDbRow.index == index))
            if row is None:
                raise NotFound(f"job {job_id} has no segment {index}")
            return to_segment(row)

    def frames(self, job_id: str, index: int) -> list[FrameRef]:
        with self.session() as s:
            rows = s.scalars(
                select(FrameDbRow)
                .where(FrameDbRow.job_id == job_id, FrameDbRow.segment_index == index)
                .order_by(FrameDbRow.n)
            ).all()
            return [FrameRef(r.n, r.t_ms, r.path, r.width, r.height, r.size_bytes) for r in rows]

    def counts(self, job_id: str) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(
                select(SegmentDbRow.state, func.count())
                .where(SegmentDbRow.job_id == job_id)
                .group_by(SegmentDbRow.state)
            ).all()
            return {state: int(n) for state, n in rows}

    def usage(self, job_id: str) -> dict[str, int]:
        with self.session() as s:
            row = s.execute(
                select(
                    func.coalesce(func.sum(SegmentDbRow.input_tokens), 0),
                    func.coalesce(func.sum(SegmentDbRow.output_tokens), 0),
                    func.coalesce(func.sum(SegmentDbRow.video_tokens), 0),
                    func.coalesce(func.sum(SegmentDbRow.attempts), 0),
                    func.coalesce(func.sum(SegmentDbRow.http_attempts), 0),
                ).where(SegmentDbRow.job_id == job_id)
            ).one()
            summary = s.scalar(select(JobRow.summary).where(JobRow.id == job_id))
        return usage_totals(tuple(row), summary)
