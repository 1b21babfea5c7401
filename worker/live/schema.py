"""Tables of live streams (migration 0006), on the result store's declarative base."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from worker.adapters.stores.schema import Base


class StreamRow(Base):
    __tablename__ = "live_streams"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    desired: Mapped[str] = mapped_column(String(16))  # active | paused | deleted
    status: Mapped[str] = mapped_column(String(16))  # idle | connecting | live | reconnecting | stopped | failed
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LiveSegmentRow(Base):
    __tablename__ = "live_segments"
    __table_args__ = (UniqueConstraint("job_id", "utc_start_ms", name="uq_live_segment_start"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    segment_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    utc_start_ms: Mapped[int] = mapped_column(BigInteger)
    utc_end_ms: Mapped[int] = mapped_column(BigInteger)
    pts_start_ms: Mapped[int] = mapped_column(BigInteger)
    pts_end_ms: Mapped[int] = mapped_column(BigInteger)
    connection: Mapped[int] = mapped_column(Integer)
    static: Mapped[bool] = mapped_column(Boolean)
    pre_event_ms: Mapped[int] = mapped_column(Integer)
    complete: Mapped[bool] = mapped_column(Boolean)


class GapRow(Base):
    __tablename__ = "live_gaps"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    utc_start_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    utc_end_ms: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)


class OutboxRow(Base):
    __tablename__ = "live_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    camera: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # alert | digest
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    mqtt: Mapped[bool] = mapped_column(Boolean)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    mqtt_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    webhook_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DigestRow(Base):
    __tablename__ = "live_digests"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    period_start_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    period_end_ms: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    segments: Mapped[int] = mapped_column(Integer)
    path: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
