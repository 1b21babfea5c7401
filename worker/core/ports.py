"""The roles adapters play. The job service depends on these, never on a technology.

Fakes for tests live in ``tests/fakes/ports.py`` (in memory: no SQLite, no OpenCV, no broker).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

from worker.core.models import Description, FrameRef, Job, JobSummary, SegmentPlan, SegmentRow, Usage, VideoInfo
from worker.core.money import FrameBudget
from worker.core.segmenters import Findings, MotionParams


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
    # asked before every request the describer sends (the first, a retry, a JSON repair) with the video
    # tokens it may bill: raises BudgetExceeded when it could pass a job cap (None: no cap)
    guard: Callable[[int], None] | None = None


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


class VideoReader(Protocol):
    """A video opened for reading: facts, then frames at target times (true PTS)."""

    path: Path

    def probe(self) -> VideoInfo: ...

    def frames(self, targets_ms: Sequence[int]) -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> VideoReader: ...

    def __exit__(self, *exc: object) -> None: ...


class FrameWriter(Protocol):
    """Where sampled frames go (JPEG files in production), and the small copies analysis uses."""

    def folder(self, job_id: str, index: int) -> Path: ...

    def clear(self, folder: Path) -> None:
        """Remove the folder and what it holds (a redelivered segment rewrites it)."""
        ...

    def write(self, folder: Path, n: int, t_ms: int, image: Any, budget: FrameBudget | None = None) -> FrameRef:
        """Write one frame, at the job's ``budget`` (pixel cap and side multiple) when given."""
        ...

    def encode(self, image: Any, budget: FrameBudget | None = None) -> tuple[bytes, int, int]:
        """(JPEG bytes, width, height) of ``image`` as ``write`` would store it at ``budget`` (a live
        camera keeps frames encoded in memory until its window closes)."""
        ...

    def drop_job(self, job_id: str) -> None:
        """Remove every frame of the job."""
        ...

    def thumb(self, image: Any) -> Any:
        """A small in-memory copy of ``image`` for local analysis (hashes, the local describer)."""
        ...

    def review(self, image: Any, ref: FrameRef) -> bytes | None:
        """The review copy (JPEG) of the frame ``ref`` written from ``image``, for ``FrameBlobs``; None when
        none is kept (the store then makes it from the frame's file)."""
        ...


class FrameKeeper(Protocol):
    """Takes the analysis pass's frames the segments will sample (``core/handover.py``)."""

    def offer(self, t_ms: int, image: Any, lo_ms: int | None, cuts_ms: Sequence[int], decoder: str) -> None:
        """One analysed frame (None: only late cuts); ``lo_ms``: the first target it is the exact frame of
        (None: a frame may lie between it and the previous one); ``decoder``: the backend that decoded it."""
        ...


class FrameHandover(Protocol):
    """Frames the analysis pass writes once for the segments, so they are not decoded again."""

    def keeper(self, job_id: str, start_ms: int, fps: Fraction, budget: FrameBudget, hold_ms: float) -> FrameKeeper:
        """A keeper for one pass (its spill folder emptied first)."""
        ...

    def hand_over(self, keeper: FrameKeeper, plans: Iterable[SegmentPlan]) -> int:
        """Put the kept frames of every plan whose targets they all serve into its folder (a manifest
        written last); drops the spill. Returns how many segments were handed their frames."""
        ...

    def discard(self, keeper: FrameKeeper) -> None:
        """Drop the spill of a pass whose plan was not stored."""
        ...

    def take(
        self, folder: Path, plan: SegmentPlan, budget: FrameBudget, reader: VideoReader
    ) -> tuple[list[FrameRef], list[Any]] | None:
        """The frames and thumbs handed to ``folder`` if complete and matching ``plan``, ``budget`` and the
        backend ``reader`` would decode them with; taken once (the folder then holds only the frames)."""
        ...


class Analyser(Protocol):
    """Frame analysis: the scene/motion pass over a span, and perceptual hashes of thumbs."""

    def analyse(
        self, reader: VideoReader, start_ms: int, end_ms: int, motion: MotionParams, keeper: FrameKeeper | None = None
    ) -> Findings: ...

    def phash(self, thumb: Any) -> int: ...


class DescriptionCache(Protocol):
    """Descriptions by call key, and per-job frame signatures for reusing a near-identical segment."""

    def get(self, key: str) -> tuple[Description, Usage] | None: ...

    def put(self, key: str, desc: Description) -> None: ...

    def add_signature(self, job_id: str, index: int, hashes: Sequence[int]) -> None: ...

    def signatures(self, job_id: str) -> Iterable[tuple[int, Sequence[int]]]: ...


class FrameBlobs(Protocol):
    """Review-size copies of a segment's frames in the result store, so every machine can serve them
    (frame originals stay on the disk of the worker that sampled them)."""

    def put(self, job_id: str, index: int, frames: Sequence[FrameRef], made: Mapping[str, bytes] | None = None) -> None:
        """Store each frame's review copy: the one ``made`` by the sampler (by frame path), else from its file."""
        ...

    def get(self, job_id: str, index: int, n: int) -> bytes | None: ...


class TextModel(Protocol):
    """A text completion model (the DashScope describer's ``complete``), for job summaries."""

    def complete(self, system: str, prompt: str, *, what: str = ...) -> tuple[Any, int]: ...


class ResultStore(Protocol):
    """What the job service needs from the result store (SqlResultStore in production)."""

    def create_job(
        self,
        source: str,
        source_name: str,
        options: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        schedule_id: str | None = None,
        webhook_url: str | None = None,
        state: str = "queued",
    ) -> tuple[Job, bool]: ...

    def get_job(self, job_id: str) -> Job: ...

    def set_job_state(
        self, job_id: str, state: str, error: str | None = None, *, only_from: Sequence[str] = ()
    ) -> bool: ...

    def plan_job(self, job_id: str, video: VideoInfo, plans: Sequence[SegmentPlan]) -> None: ...

    def claim_segment(self, job_id: str, index: int) -> bool: ...

    def save_segment(
        self,
        job_id: str,
        index: int,
        desc: Description,
        frames: Sequence[FrameRef],
        *,
        state: str = "done",
        reused_from: int | None = None,
    ) -> bool: ...

    def fail_segment(self, job_id: str, index: int, error: str, spent: Usage | None = None) -> bool:
        """``spent``: what the failed calls cost (requests sent, tokens of replies lost after sending)."""
        ...

    def add_spent(self, job_id: str, index: int, spent: Usage) -> None:
        """Add what failed requests cost to a segment that will be tried again (a Celery retry)."""
        ...

    def segment_state(self, job_id: str, index: int) -> str | None: ...

    def segment_rows(self, job_id: str) -> Iterator[SegmentRow]: ...

    def segment(self, job_id: str, index: int) -> SegmentRow: ...

    def counts(self, job_id: str) -> dict[str, int]: ...

    def usage(self, job_id: str) -> dict[str, int]: ...

    def claim_summary(self, job_id: str, owner: str | None = None, lease_s: float = 60.0) -> bool: ...

    def renew_summary(self, job_id: str, owner: str, lease_s: float) -> bool: ...

    def finish_job(
        self, job_id: str, summary: JobSummary, state: str, error: str | None = None, *, owner: str | None = None
    ) -> bool: ...

    def cancel_job(self, job_id: str) -> int: ...

    def reset_failed(self, job_id: str) -> list[int]: ...

    def cancel_remaining(self, job_id: str, reason: str, *, only_if_cancelled: bool = False) -> int: ...

    def cancel_pending(self, job_id: str, reason: str) -> int:
        """Only segments not yet started end cancelled (running ones, on other workers, finish)."""
        ...

    def delete_job(self, job_id: str) -> None: ...

    def reopen_job(self, job_id: str) -> bool: ...

    # requests in flight under a job's caps, shared by every process (service/caps.py)
    def reserve_spend(
        self,
        job_id: str,
        key: str,
        index: int,
        calls: int,
        video_tokens: int,
        *,
        max_calls: int | None,
        max_video_tokens: int | None,
        ttl_s: float,
    ) -> tuple[int, int] | None:
        """Atomically add ``calls``/``video_tokens`` to reservation ``key`` of segment ``index`` (renewed
        for ``ttl_s``) if the stored usage plus the job's live reservations plus these stay within the
        caps: None; else nothing changes and the answer is (requests, video tokens) made or in flight.
        Live: not expired (``key`` itself always counts) and its segment not yet ended."""
        ...

    def release_spend(self, key: str) -> None: ...
