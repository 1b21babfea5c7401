"""Plain data that flows through a job: video facts, plans, results, usage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What probing a file tells: duration and rate come from the container, not from counting."""

    duration_ms: int
    fps: float
    frame_count: int
    width: int
    height: int
    codec: str
    size_bytes: int = 0
    claimed_duration_ms: int = 0  # what the header says; differs from duration_ms on truncated/lying files

    @property
    def header_mismatch(self) -> str | None:
        """A note when the header claims much more than decodes (truncated, corrupt or lying file)."""
        claimed, real = self.claimed_duration_ms, self.duration_ms
        if claimed > real + max(2000, real // 10):
            return (
                f"the file's header says {claimed / 1000:.1f}s but only {real / 1000:.1f}s can be decoded "
                "(truncated or corrupt); the decodable part was described"
            )
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "duration_ms": self.duration_ms,
            "fps": self.fps,
            "frame_count": self.frame_count,
            "width": self.width,
            "height": self.height,
            "codec": self.codec,
            "size_bytes": self.size_bytes,
            "claimed_duration_ms": self.claimed_duration_ms,
            "warning": self.header_mismatch,
        }


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    """One segment: its time range and the target sample times inside it (ms, increasing)."""

    index: int
    start_ms: int
    end_ms: int
    fps: Fraction
    targets_ms: tuple[int, ...]
    kind: str = "describe"  # "describe" or "static" (no model call)

    @property
    def frame_count(self) -> int:
        return len(self.targets_ms)


@dataclass(frozen=True, slots=True)
class FrameRef:
    """A frame written to disk: its true presentation time and where it lies."""

    n: int
    t_ms: int
    path: str
    width: int
    height: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    video_tokens: int = 0
    request_id: str | None = None
    latency_ms: int = 0
    attempts: int = 1
    http_attempts: int = 0  # model requests really sent (retries included)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.video_tokens + other.video_tokens,
            None,
            self.latency_ms + other.latency_ms,
            self.attempts + other.attempts,
            self.http_attempts + other.http_attempts,
        )


@dataclass(frozen=True, slots=True)
class Description:
    """What a describer says about one segment."""

    text: str
    structured: dict[str, Any] = field(default_factory=dict)
    describer: str = "local"
    model: str | None = None
    usage: Usage = Usage(attempts=0)
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SegmentRow:
    """A stored segment as the summary and exports see it."""

    index: int
    start_ms: int
    end_ms: int
    state: str
    description: str | None
    structured: dict[str, Any]
    frame_count: int
    input_tokens: int = 0
    output_tokens: int = 0
    video_tokens: int = 0
    error: str | None = None
    describer: str | None = None
    model: str | None = None
    reused_from: int | None = None
    attempts: int = 0
    latency_ms: int = 0
    request_id: str | None = None
    fps: str | None = None
    flags: tuple[str, ...] = ()  # e.g. time_out_of_range, json_repaired, invalid_json, cached, reused
    http_attempts: int = 0


@dataclass(frozen=True, slots=True)
class JobSummary:
    text: str
    state: str
    segments_total: int
    segments_done: int
    segments_failed: int
    duration_ms: int
    input_tokens: int
    output_tokens: int
    video_tokens: int
    calls: int
    calls_saved: int
    chapters: tuple[tuple[int, int, str], ...] = ()
    source: str = "local"
    video_tokens_saved: int = 0  # estimated from the plan: static, reused and thinned segments
    summary_usage: dict[str, Any] = field(default_factory=dict)  # the summary's own calls (model, tokens)
    cost: dict[str, Any] = field(default_factory=dict)  # {"amount", "currency"} when priced

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "state": self.state,
            "segments_total": self.segments_total,
            "segments_done": self.segments_done,
            "segments_failed": self.segments_failed,
            "duration_ms": self.duration_ms,
            "usage": {
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "video_tokens": self.video_tokens,
                "calls": self.calls,
                "calls_saved": self.calls_saved,
                "video_tokens_saved": self.video_tokens_saved,
                "summary": dict(self.summary_usage),
                **({"cost": dict(self.cost)} if self.cost else {}),
            },
            "chapters": [{"start_ms": s, "end_ms": e, "title": t} for s, e, t in self.chapters],
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class Job:
    """A stored job, as the service sees it."""

    id: str
    state: str
    source: str
    source_name: str
    options: dict[str, Any]
    video: dict[str, Any] | None
    segment_count: int
    error: str | None
    summary: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    schedule_id: str | None
    webhook_url: str | None
    idempotency_key: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "source": self.source,
            "source_name": self.source_name,
            "options": self.options,
            "video": self.video,
            "segment_count": self.segment_count,
            "error": self.error,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "schedule_id": self.schedule_id,
        }
