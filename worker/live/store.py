"""Reads and writes of live streams on the result store: streams, wall-clock segment times, gaps, outbox, digests.

Segments themselves live in the job's ``segments`` table (search, ask, exports and the review page work
unchanged); ``live_segments`` adds their UTC times, keyed unique on (job, UTC start) so a restarted
watcher or a redelivered segment never stores one twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from worker.adapters.stores.schema import JobRow, SegmentDbRow
from worker.adapters.stores.sql import SqlResultStore, now
from worker.errors import NotFound
from worker.live.schema import DigestRow, GapRow, LiveSegmentRow, OutboxRow, StreamRow


@dataclass(frozen=True, slots=True)
class Stream:
    id: str
    name: str
    url: str
    options: dict[str, Any]
    desired: str
    status: str
    reason: str | None
    job_id: str | None
    owner: str | None
    updated_at: datetime

    def as_dict(self, redacted_url: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "url": redacted_url or self.url,
            "options": self.options,
            "desired": self.desired,
            "status": self.status,
            "reason": self.reason,
            "job_id": self.job_id,
            "owner": self.owner,
            "updated_at": self.updated_at.isoformat(),
        }


def _stream(r: StreamRow) -> Stream:
    return Stream(
        r.id, r.name, r.url, dict(r.options or {}), r.desired, r.status, r.reason, r.job_id, r.owner, r.updated_at
    )


class LiveStore:
    def __init__(self, store: SqlResultStore) -> None:
        self.store = store

    # -- streams ---------------------------------------------------------------------------------
    def upsert_stream(self, name: str, url: str, options: dict[str, Any]) -> Stream:
        """The stream called ``name`` (created, or its URL and options updated); it keeps its job."""
        with self.store.session() as s, s.begin():
            row = s.scalar(select(StreamRow).where(StreamRow.name == name))
            if row is None:
                row = StreamRow(
                    id=uuid.uuid4().hex,
                    name=name,
                    url=url,
                    options=options,
                    desired="active",
                    status="idle",
                    created_at=now(),
                    updated_at=now(),
                )
                s.add(row)
            else:
                row.url, row.options, row.updated_at = url, options, now()
                if row.desired == "deleted":
                    row.desired = "active"
        return self.get(name)

    def get(self, key: str) -> Stream:
        with self.store.session() as s:
            row = s.scalar(select(StreamRow).where((StreamRow.name == key) | (StreamRow.id == key)))
            if row is None or row.desired == "deleted":
                raise NotFound(f"no stream called {key}")
            return _stream(row)

    def all(self) -> list[Stream]:
        with self.store.session() as s:
            rows = s.scalars(select(StreamRow).where(StreamRow.desired != "deleted").order_by(StreamRow.name)).all()
            return [_stream(r) for r in rows]

    def set_desired(self, key: str, desired: str) -> Stream:
        stream = self.get(key)
        with self.store.session() as s, s.begin():
            s.execute(update(StreamRow).where(StreamRow.id == stream.id).values(desired=desired, updated_at=now()))
        with self.store.session() as s:
            row = s.get(StreamRow, stream.id)
            assert row is not None
            return _stream(row)

    def desired(self, stream_id: str) -> str:
        with self.store.session() as s:
            return s.scalar(select(StreamRow.desired).where(StreamRow.id == stream_id)) or "deleted"

    def set_status(self, stream_id: str, status: str, reason: str | None = None, owner: str | None = None) -> None:
        values: dict[str, Any] = {"status": status, "reason": reason, "updated_at": now()}
        if owner is not None:
            values["owner"] = owner
        with self.store.session() as s, s.begin():
            s.execute(update(StreamRow).where(StreamRow.id == stream_id).values(**values))

    def set_job(self, stream_id: str, job_id: str) -> None:
        with self.store.session() as s, s.begin():
            s.execute(update(StreamRow).where(StreamRow.id == stream_id).values(job_id=job_id, updated_at=now()))

    def reopen_job(self, job_id: str) -> None:
        """A stream's job that was finished (stopped watcher) runs again: its next summary is a new one."""
        with self.store.session() as s, s.begin():
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(state="running", summary_state="none", finished_at=None, updated_at=now())
            )

    # -- segments and gaps -----------------------------------------------------------------------
    def resume_point(self, job_id: str) -> tuple[int, int]:
        """(next segment index, UTC end of the last stored segment or 0): where a restart resumes."""
        with self.store.session() as s:
            last_index = s.scalar(select(func.max(SegmentDbRow.index)).where(SegmentDbRow.job_id == job_id))
            last_end = s.scalar(select(func.max(LiveSegmentRow.utc_end_ms)).where(LiveSegmentRow.job_id == job_id))
        return (-1 if last_index is None else int(last_index)) + 1, int(last_end or 0)

    def add_segment(self, row: LiveSegmentRow) -> bool:
        """Record a segment's wall-clock times; False when one starting at that UTC is stored already."""
        try:
            with self.store.session() as s, s.begin():
                s.add(row)
        except IntegrityError:
            return False
        return True

    def segments(self, job_id: str, since_utc_ms: int = 0, until_utc_ms: int | None = None) -> Iterator[LiveSegmentRow]:
        q = select(LiveSegmentRow).where(LiveSegmentRow.job_id == job_id, LiveSegmentRow.utc_start_ms >= since_utc_ms)
        if until_utc_ms is not None:
            q = q.where(LiveSegmentRow.utc_start_ms < until_utc_ms)
        with self.store.session() as s:
            yield from s.scalars(q.order_by(LiveSegmentRow.segment_index).limit(100_000)).all()

    def add_gap(self, job_id: str, start_ms: int, end_ms: int, reason: str) -> bool:
        try:
            with self.store.session() as s, s.begin():
                s.add(GapRow(job_id=job_id, utc_start_ms=start_ms, utc_end_ms=end_ms, reason=reason[:1000]))
        except IntegrityError:
            return False
        return True

    def gaps(self, job_id: str) -> list[GapRow]:
        with self.store.session() as s:
            return list(s.scalars(select(GapRow).where(GapRow.job_id == job_id).order_by(GapRow.utc_start_ms)).all())

    # -- outbox ----------------------------------------------------------------------------------
    def enqueue(
        self, dedup_key: str, camera: str, kind: str, payload: dict[str, Any], mqtt: bool, webhook: str | None
    ) -> bool:
        """Put a message in the outbox once (the dedup key is unique); False when it was there already."""
        try:
            with self.store.session() as s, s.begin():
                s.add(
                    OutboxRow(
                        dedup_key=dedup_key,
                        camera=camera,
                        kind=kind,
                        payload=payload,
                        mqtt=mqtt,
                        webhook_url=webhook,
                        attempts=0,
                        created_at=now(),
                    )
                )
        except IntegrityError:
            return False
        return True

    def pending(self, camera: str | None = None, limit: int = 100) -> list[OutboxRow]:
        q = select(OutboxRow).where(
            (OutboxRow.mqtt & OutboxRow.mqtt_sent_at.is_(None))
            | (OutboxRow.webhook_url.is_not(None) & OutboxRow.webhook_sent_at.is_(None))
        )
        if camera:
            q = q.where(OutboxRow.camera == camera)
        with self.store.session() as s:
            return list(s.scalars(q.order_by(OutboxRow.id).limit(limit)).all())

    def mark(self, row_id: int, *, mqtt: bool = False, webhook: bool = False, error: str | None = None) -> None:
        values: dict[str, Any] = {"attempts": OutboxRow.attempts + 1, "last_error": error}
        if mqtt:
            values["mqtt_sent_at"] = now()
        if webhook:
            values["webhook_sent_at"] = now()
        with self.store.session() as s, s.begin():
            s.execute(update(OutboxRow).where(OutboxRow.id == row_id).values(**values))

    def outbox(self, camera: str, kind: str | None = None) -> list[OutboxRow]:
        q = select(OutboxRow).where(OutboxRow.camera == camera)
        if kind:
            q = q.where(OutboxRow.kind == kind)
        with self.store.session() as s:
            return list(s.scalars(q.order_by(OutboxRow.id).limit(10_000)).all())

    # -- digests ---------------------------------------------------------------------------------
    def add_digest(self, row: DigestRow) -> bool:
        try:
            with self.store.session() as s, s.begin():
                s.add(row)
        except IntegrityError:
            return False
        return True

    def last_digest_end(self, job_id: str) -> int:
        with self.store.session() as s:
            return int(s.scalar(select(func.max(DigestRow.period_end_ms)).where(DigestRow.job_id == job_id)) or 0)

    def digests(self, job_id: str) -> list[DigestRow]:
        with self.store.session() as s:
            return list(
                s.scalars(select(DigestRow).where(DigestRow.job_id == job_id).order_by(DigestRow.period_start_ms)).all()
            )
