"""Schedules, the files each schedule has seen, and webhook delivery attempts (same database as the jobs).

Tables are created by migration ``0002`` (branch ``schedules``); ``ScheduleStore`` works on the
``SqlResultStore``'s engine, one transaction per write.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from worker.adapters.stores.schema import Base
from worker.errors import NotFound


def now() -> datetime:
    return datetime.now(UTC)


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


class ScheduleRow(Base):
    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    cron: Mapped[str | None] = mapped_column(String(200), nullable=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    interval_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    source_kind: Mapped[str] = mapped_column(String(16))  # folder | url
    source: Mapped[str] = mapped_column(Text)
    glob: Mapped[str] = mapped_column(String(200), default="*")
    settle_s: Mapped[float] = mapped_column(Float, default=5.0)
    max_files_per_run: Mapped[int] = mapped_column(Integer, default=100)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    jobs_created: Mapped[int] = mapped_column(Integer, default=0)


class SeenFileRow(Base):
    __tablename__ = "schedule_seen_files"
    __table_args__ = (UniqueConstraint("schedule_id", "file_key", name="uq_seen_file"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"), index=True)
    file_key: Mapped[str] = mapped_column(String(64))  # sha256(path, size, mtime_ns)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebhookDeliveryRow(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(64), index=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class Schedule:
    id: str
    name: str
    enabled: bool
    cron: str | None
    timezone: str
    interval_s: float | None
    source_kind: str
    source: str
    glob: str
    settle_s: float
    max_files_per_run: int
    options: dict[str, Any]
    webhook_url: str | None
    created_at: datetime
    updated_at: datetime
    last_run_at: datetime | None
    last_error: str | None
    run_count: int
    jobs_created: int


EDITABLE = (
    "name",
    "enabled",
    "cron",
    "timezone",
    "interval_s",
    "source_kind",
    "source",
    "glob",
    "settle_s",
    "max_files_per_run",
    "options",
    "webhook_url",
)


def _schedule(row: ScheduleRow) -> Schedule:
    values = {f.name: getattr(row, f.name) for f in fields(Schedule)}
    values["options"] = dict(row.options or {})
    values["created_at"] = _utc(row.created_at)
    values["updated_at"] = _utc(row.updated_at)
    values["last_run_at"] = _utc(row.last_run_at)
    return Schedule(**values)


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: str
    job_id: str
    attempt: int
    url: str
    status_code: int | None
    ok: bool
    error: str | None
    duration_ms: int
    created_at: datetime


class ScheduleStore:
    """Reads and writes of schedules, seen files and webhook deliveries on an existing engine."""

    def __init__(self, engine: Engine) -> None:
        self._session = sessionmaker(engine, expire_on_commit=False)

    # -- schedules ----------------------------------------------------------------------------
    def create(self, **values: Any) -> Schedule:
        unknown = set(values) - set(EDITABLE)
        if unknown:
            raise ValueError(f"unknown schedule fields {sorted(unknown)}")
        ts = now()
        row = ScheduleRow(id=uuid.uuid4().hex, created_at=ts, updated_at=ts, run_count=0, jobs_created=0, **values)
        with self._session() as s, s.begin():
            s.add(row)
        return _schedule(row)

    def get(self, schedule_id: str) -> Schedule:
        with self._session() as s:
            row = s.get(ScheduleRow, schedule_id)
            if row is None:
                raise NotFound(f"no schedule with id {schedule_id}")
            return _schedule(row)

    def page(self, *, limit: int = 100, before: str | None = None) -> list[Schedule]:
        q = select(ScheduleRow)
        if before:
            q = q.where(ScheduleRow.id < before)
        with self._session() as s:
            rows = s.scalars(q.order_by(ScheduleRow.id.desc()).limit(limit)).all()
            return [_schedule(r) for r in rows]

    def all_ids(self) -> list[str]:
        with self._session() as s:
            return list(s.scalars(select(ScheduleRow.id)))

    def update(self, schedule_id: str, **values: Any) -> Schedule:
        unknown = set(values) - set(EDITABLE)
        if unknown:
            raise ValueError(f"unknown schedule fields {sorted(unknown)}")
        with self._session() as s, s.begin():
            res = s.execute(update(ScheduleRow).where(ScheduleRow.id == schedule_id).values(updated_at=now(), **values))
            if not res.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"no schedule with id {schedule_id}")
        return self.get(schedule_id)

    def delete(self, schedule_id: str) -> None:
        with self._session() as s, s.begin():
            s.execute(delete(SeenFileRow).where(SeenFileRow.schedule_id == schedule_id))
            res = s.execute(delete(ScheduleRow).where(ScheduleRow.id == schedule_id))
            if not res.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"no schedule with id {schedule_id}")

    def mark_run(self, schedule_id: str, *, jobs_created: int, error: str | None) -> None:
        with self._session() as s, s.begin():
            s.execute(
                update(ScheduleRow)
                .where(ScheduleRow.id == schedule_id)
                .values(
                    last_run_at=now(),
                    last_error=error[:4000] if error else None,
                    run_count=ScheduleRow.run_count + 1,
                    jobs_created=ScheduleRow.jobs_created + jobs_created,
                )
            )

    # -- seen files ---------------------------------------------------------------------------
    def seen_keys(self, schedule_id: str, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` this schedule has already seen (asked in chunks to bound the query)."""
        wanted = list(keys)
        found: set[str] = set()
        with self._session() as s:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                found.update(
                    s.scalars(
                        select(SeenFileRow.file_key).where(
                            SeenFileRow.schedule_id == schedule_id, SeenFileRow.file_key.in_(chunk)
                        )
                    )
                )
        return found

    def claim_file(self, schedule_id: str, key: str, path: str, size: int, mtime_ns: int) -> bool:
        """Record a file as seen; False when another run already did (the unique constraint decides)."""
        row = SeenFileRow(schedule_id=schedule_id, file_key=key, path=path, size=size, mtime_ns=mtime_ns, seen_at=now())
        try:
            with self._session() as s, s.begin():
                s.add(row)
        except IntegrityError:
            return False
        return True

    def set_file_job(self, schedule_id: str, key: str, job_id: str) -> None:
        with self._session() as s, s.begin():
            s.execute(
                update(SeenFileRow)
                .where(SeenFileRow.schedule_id == schedule_id, SeenFileRow.file_key == key)
                .values(job_id=job_id)
            )

    def release_file(self, schedule_id: str, key: str) -> None:
        """Forget a claimed file (its job could not be created), so the next run tries again."""
        with self._session() as s, s.begin():
            s.execute(delete(SeenFileRow).where(SeenFileRow.schedule_id == schedule_id, SeenFileRow.file_key == key))

    def seen_count(self, schedule_id: str) -> int:
        with self._session() as s:
            return int(s.scalar(select(func.count()).where(SeenFileRow.schedule_id == schedule_id)) or 0)

    # -- webhook deliveries -------------------------------------------------------------------
    def record_delivery(
        self,
        delivery_id: str,
        job_id: str,
        attempt: int,
        url: str,
        *,
        status_code: int | None,
        ok: bool,
        error: str | None,
        duration_ms: int,
    ) -> None:
        row = WebhookDeliveryRow(
            delivery_id=delivery_id,
            job_id=job_id,
            attempt=attempt,
            url=url,
            status_code=status_code,
            ok=ok,
            error=error[:2000] if error else None,
            duration_ms=duration_ms,
            created_at=now(),
        )
        with self._session() as s, s.begin():
            s.add(row)

    def deliveries(self, job_id: str) -> Sequence[Delivery]:
        with self._session() as s:
            rows = s.scalars(
                select(WebhookDeliveryRow).where(WebhookDeliveryRow.job_id == job_id).order_by(WebhookDeliveryRow.id)
            ).all()
            return [
                Delivery(
                    r.delivery_id,
                    r.job_id,
                    r.attempt,
                    r.url,
                    r.status_code,
                    r.ok,
                    r.error,
                    r.duration_ms,
                    _utc(r.created_at) or now(),
                )
                for r in rows
            ]

    def delete_deliveries(self, job_id: str) -> None:
        with self._session() as s, s.begin():
            s.execute(delete(WebhookDeliveryRow).where(WebhookDeliveryRow.job_id == job_id))
