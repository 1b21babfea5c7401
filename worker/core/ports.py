"""The roles adapters play. The pipeline depends on these, never on a technology."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from worker.core.models import Description, FrameRef, SegmentPlan, VideoInfo


@dataclass(frozen=True, slots=True)
class DescribeRequest:
    job_id: str
    source_name: str
    plan: SegmentPlan
    frames: Sequence[FrameRef]
    fps: float
    prompt: str
    system_prompt: str
    preset: str
    previous: str | None = None
    thumbs: Sequence[Any] = ()  # small in-memory images (numpy arrays) for local analysis


class Describer(Protocol):
    name: str

    def describe(self, request: DescribeRequest) -> Description: ...


class FrameSource(Protocol):
    def probe(self) -> VideoInfo: ...

    def frames(self, targets_ms: Sequence[int]) -> Iterator[tuple[int, Any]]:
        """Yield ``(true_pts_ms, image)`` for each target, in order."""
        ...

    def close(self) -> None: ...


class Enqueuer(Protocol):
    """How work is queued: Celery over Redis, or a thread in this process. Nothing else knows.

    Every method raises ``QueueUnavailable`` when the queue cannot take the work."""

    def enqueue_job(self, job_id: str) -> None:
        """Plan the job, then run its pending segments and finish it."""
        ...

    def enqueue_segment(self, job_id: str, index: int) -> None: ...

    def send_webhook(self, job_id: str) -> None:
        """Deliver the finished job's webhook (retried with backoff)."""
        ...

    def fire_schedule(self, schedule_id: str) -> str:
        """One manual run of a schedule; returns the run's token."""
        ...

    def broker_ok(self) -> bool: ...

    def workers(self, timeout_s: float = 1.0) -> int: ...

    def queue_depth(self) -> int | None: ...

    def close(self) -> None: ...
