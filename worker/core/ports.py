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
