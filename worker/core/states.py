"""The one definition of job and segment states. ``reused`` and ``cached`` are flags, not states."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SegmentState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    STATIC = "static"  # a quiet span stored without a model call
    FAILED = "failed"
    CANCELLED = "cancelled"


LIVE_JOB: tuple[str, ...] = (JobState.QUEUED, JobState.RUNNING)
TERMINAL_JOB: tuple[str, ...] = (JobState.DONE, JobState.PARTIAL, JobState.FAILED, JobState.CANCELLED)
RETRYABLE_JOB: tuple[str, ...] = (JobState.FAILED, JobState.PARTIAL, JobState.CANCELLED)
ACTIVE_SEGMENT: tuple[str, ...] = (SegmentState.PENDING, SegmentState.RUNNING)
DESCRIBED_SEGMENT: frozenset[str] = frozenset({SegmentState.DONE, SegmentState.STATIC})
RESETTABLE_SEGMENT: tuple[str, ...] = (SegmentState.FAILED, SegmentState.CANCELLED)
