"""Result store: claiming, saving and failing segments; reading segments, frames and usage."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import delete, func, select, update

from worker.adapters.stores.engine import StoreBase
from worker.adapters.stores.rows import to_segment
from worker.adapters.stores.schema import FrameDbRow, JobRow, SegmentDbRow
from worker.core.models import Description, FrameRef, SegmentRow, Usage
from worker.core.states import ACTIVE_SEGMENT as ACTIVE
from worker.errors import NotFound


class SegmentsMixin(StoreBase):
    """Segments and their frames: the first writer wins."""

    def claim_segment(self, job_id: str, index: int) -> bool:
        """pending|failed|running -> running, attempts + 1. False when done, static or cancelled."""
        with self.session() as s, s.begin():
            res = s.execute(
                update(SegmentDbRow)
                .where(
                    SegmentDbRow.job_id == job_id,
                    SegmentDbRow.index == index,
                    SegmentDbRow.state.in_(("pending", "running", "failed")),
                )
                .values(
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
                update(SegmentDbRow)
                .where(
                    SegmentDbRow.job_id == job_id,
                    SegmentDbRow.index == index,
                    SegmentDbRow.state.in_(ACTIVE),  # only a claimed (or just planned) row; never over failed/done
                )
                .values(
                    state=state,
                    description=desc.text,
                    structured=desc.structured,
                    describer=desc.describer,
                    model=desc.model,
                    # added: tokens an earlier failed attempt was billed for stay counted
                    input_tokens=SegmentDbRow.input_tokens + u.input_tokens,
                    output_tokens=SegmentDbRow.output_tokens + u.output_tokens,
                    video_tokens=SegmentDbRow.video_tokens + u.video_tokens,
                    http_attempts=SegmentDbRow.http_attempts + u.http_attempts,
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
            s.execute(delete(FrameDbRow).where(FrameDbRow.job_id == job_id, FrameDbRow.segment_index == index))
            s.add_all(
                FrameDbRow(
                    job_id=job_id,
                    segment_index=index,
                    n=f.n,
                    t_ms=f.t_ms,
                    path=f.path,
                    width=f.width,
                    height=f.height,
                    size_bytes=f.size_bytes,
                )
                for f in frames
            )
        return True

    def fail_segment(self, job_id: str, index: int, error: str, spent: Usage | None = None) -> bool:
        """``spent``: what the failed calls cost (requests sent, tokens of replies lost after sending)."""
        more: dict[str, Any] = {}
        if spent is not None:
            more = {
                "input_tokens": SegmentDbRow.input_tokens + spent.input_tokens,
                "output_tokens": SegmentDbRow.output_tokens + spent.output_tokens,
                "video_tokens": SegmentDbRow.video_tokens + spent.video_tokens,
                "http_attempts": SegmentDbRow.http_attempts + spent.http_attempts,
            }
        with self.session() as s, s.begin():
            res = s.execute(
                update(SegmentDbRow)
                .where(
                    SegmentDbRow.job_id == job_id,
                    SegmentDbRow.index == index,
                    SegmentDbRow.state.in_(ACTIVE),
                )
                .values(state="failed", error=error[:4000], updated_at=self.db_now(), **more)
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def add_spent(self, job_id: str, index: int, spent: Usage) -> None:
        """Add what failed requests cost to a segment that will be tried again (a Celery retry)."""
        with self.session() as s, s.begin():
            s.execute(
                update(SegmentDbRow)
                .where(SegmentDbRow.job_id == job_id, SegmentDbRow.index == index)
                .values(
                    input_tokens=SegmentDbRow.input_tokens + spent.input_tokens,
                    output_tokens=SegmentDbRow.output_tokens + spent.output_tokens,
                    video_tokens=SegmentDbRow.video_tokens + spent.video_tokens,
                    http_attempts=SegmentDbRow.http_attempts + spent.http_attempts,
                )
            )

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
            summary = s.scalar(select(JobRow.summary).where(JobRow.id == job_id)) or {}
        # the summary's own calls (a text model) are money too: counted with the segments'
        extra = ((summary.get("usage") or {}).get("summary") or {}) if isinstance(summary, dict) else {}
        return {
            "input_tokens": int(row[0]) + int(extra.get("input_tokens", 0)),
            "output_tokens": int(row[1]) + int(extra.get("output_tokens", 0)),
            "video_tokens": int(row[2]),
            "attempts": int(row[3]),
            "http_attempts": int(row[4]) + int(extra.get("http_attempts", 0)),
            "summary_input_tokens": int(extra.get("input_tokens", 0)),
            "summary_output_tokens": int(extra.get("output_tokens", 0)),
            "summary_calls": int(extra.get("calls", 0)),
        }
