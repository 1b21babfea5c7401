"""Tables of the result store (SQLAlchemy 2). Alembic migrations in worker/migrations create them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16), index=True)
    source: Mapped[str] = mapped_column(Text)
    source_name: Mapped[str] = mapped_column(String(512))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    video: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    segment_count: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    summary_state: Mapped[str] = mapped_column(String(16), default="none")  # none|claimed|done
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    schedule_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the summary claim as a lease (migration 0008): a finisher that dies is taken over when it expires
    summary_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    summary_lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SegmentDbRow(Base):
    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("job_id", "index", name="uq_segment_job_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    fps: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), default="describe")
    planned_frames: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending|running|done|static|failed|cancelled
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    structured: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    describer: Mapped[str | None] = mapped_column(String(32), nullable=True)
    model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    video_tokens: Mapped[int] = mapped_column(Integer, default=0)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    http_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # model requests sent
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    frame_count: Mapped[int] = mapped_column(Integer, default=0)
    reused_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    flags: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # a running segment's lease (migration 0008), renewed by the task's heartbeat; expired = orphaned
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OutboxRow(Base):
    """A finished job's webhook, written in the summary's transaction; sent at least once (same id)."""

    __tablename__ = "webhook_outbox"

    delivery_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16))  # pending|sent|given_up
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class FrameDbRow(Base):
    __tablename__ = "frames"
    __table_args__ = (
        UniqueConstraint("job_id", "segment_index", "n", name="uq_frame"),
        Index("ix_frames_job_segment", "job_id", "segment_index"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    segment_index: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(Integer)
    t_ms: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)


class ReservationRow(Base):
    """Requests in flight under a job's caps (migration 0010, ``reservations.py``)."""

    __tablename__ = "spend_reservations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    segment_index: Mapped[int] = mapped_column(Integer)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    video_tokens: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
