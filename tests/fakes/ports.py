"""In-memory fakes of the core's ports (worker/core/ports.py): the job service runs on them with no
SQLite, no OpenCV and no broker. They keep the real adapters' rules that the service relies on:
first writer wins, a claim moves only active rows, the summary is claimed once, and a cancelled job
keeps its state when it is finished."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.config import Settings
from worker.core.models import Description, FrameRef, Job, JobSummary, SegmentPlan, SegmentRow, Usage, VideoInfo
from worker.core.ports import DescribeRequest
from worker.core.segmenters import Findings, MotionParams
from worker.core.states import ACTIVE_SEGMENT, TERMINAL_JOB
from worker.errors import ConfigError, NotFound
from worker.options import JobOptions
from worker.service.context import Ports


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Seg:
    plan: SegmentPlan
    row: SegmentRow
    frames: list[FrameRef] = field(default_factory=list)


class FakeStore:
    """The ``ResultStore`` port in memory (thread-safe: the in-process runner writes from a pool)."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.summary_state: dict[str, str] = {}
        self.segs: dict[str, dict[int, _Seg]] = {}
        self.lock = threading.RLock()
        # reservations under the caps: key -> (job_id, segment index, calls, video tokens, expires at)
        self.reservations: dict[str, tuple[str, int, int, int, float]] = {}

    def create_job(
        self, source: str, source_name: str, options: dict[str, Any], *, idempotency_key: str | None = None,
        schedule_id: str | None = None, webhook_url: str | None = None, state: str = "queued",
    ) -> tuple[Job, bool]:  # fmt: skip
        with self.lock:
            for job in self.jobs.values():
                if idempotency_key and job.idempotency_key == idempotency_key:
                    return job, False
            ts = _now()
            job = Job(uuid.uuid4().hex, state, source, source_name, dict(options), None, 0, None, None, ts, ts,
                      None, schedule_id, webhook_url, idempotency_key)  # fmt: skip
            self.jobs[job.id], self.summary_state[job.id], self.segs[job.id] = job, "none", {}
            return job, True

    def get_job(self, job_id: str) -> Job:
        with self.lock:
            if job_id not in self.jobs:
                raise NotFound(f"job {job_id} not found")
            return self.jobs[job_id]

    def _set(self, job_id: str, **values: Any) -> None:
        self.jobs[job_id] = replace(self.jobs[job_id], updated_at=_now(), **values)

    def set_job_state(
        self, job_id: str, state: str, error: str | None = None, *, only_from: Sequence[str] = ()
    ) -> bool:
        with self.lock:
            job = self.get_job(job_id)
            if only_from and job.state not in only_from:
                return False
            values: dict[str, Any] = {"state": state}
            if error is not None:
                values["error"] = error
            if state in TERMINAL_JOB:
                values["finished_at"] = _now()
            self._set(job_id, **values)
            return True

    def plan_job(self, job_id: str, video: VideoInfo, plans: Sequence[SegmentPlan]) -> None:
        with self.lock:
            segs = self.segs[job_id]
            for p in plans:
                if p.index not in segs:
                    row = SegmentRow(index=p.index, start_ms=p.start_ms, end_ms=p.end_ms, state="pending",
                                     description=None, structured={}, frame_count=0, fps=str(p.fps))  # fmt: skip
                    segs[p.index] = _Seg(p, row)
            self._set(job_id, video=video.as_dict(), segment_count=len(segs))

    def _update(self, job_id: str, index: int, states: Sequence[str], **values: Any) -> bool:
        with self.lock:
            seg = self.segs[job_id].get(index)
            if seg is None or seg.row.state not in states:
                return False
            seg.row = replace(seg.row, **values)
            return True

    def claim_segment(self, job_id: str, index: int) -> bool:
        with self.lock:
            seg = self.segs[job_id].get(index)
            attempts = seg.row.attempts + 1 if seg else 0
            return self._update(job_id, index, ("pending", "running", "failed"), state="running", attempts=attempts)

    def save_segment(
        self, job_id: str, index: int, desc: Description, frames: Sequence[FrameRef], *, state: str = "done",
        reused_from: int | None = None,
    ) -> bool:  # fmt: skip
        u = desc.usage
        with self.lock:
            ok = self._update(
                job_id, index, ACTIVE_SEGMENT, state=state, description=desc.text, structured=dict(desc.structured),
                describer=desc.describer, model=desc.model, input_tokens=u.input_tokens,
                output_tokens=u.output_tokens, video_tokens=u.video_tokens, request_id=u.request_id,
                latency_ms=u.latency_ms, error=None, frame_count=len(frames), reused_from=reused_from,
                flags=tuple(desc.flags), http_attempts=u.http_attempts,
            )  # fmt: skip
            if ok:
                self.segs[job_id][index].frames = list(frames)
            return ok

    def fail_segment(self, job_id: str, index: int, error: str, spent: Any = None) -> bool:
        return self._update(job_id, index, ACTIVE_SEGMENT, state="failed", error=error)

    def add_spent(self, job_id: str, index: int, spent: Any) -> None:
        return None

    def segment_state(self, job_id: str, index: int) -> str | None:
        with self.lock:
            seg = self.segs[job_id].get(index)
            return seg.row.state if seg else None

    def segment_rows(self, job_id: str) -> Iterator[SegmentRow]:
        with self.lock:
            rows = [self.segs[job_id][i].row for i in sorted(self.segs.get(job_id, {}))]
        return iter(rows)

    def segment(self, job_id: str, index: int) -> SegmentRow:
        with self.lock:
            if index not in self.segs.get(job_id, {}):
                raise NotFound(f"job {job_id} has no segment {index}")
            return self.segs[job_id][index].row

    def frames(self, job_id: str, index: int) -> list[FrameRef]:
        return list(self.segs[job_id][index].frames)

    def counts(self, job_id: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.segment_rows(job_id):
            out[row.state] = out.get(row.state, 0) + 1
        return out

    def usage(self, job_id: str) -> dict[str, int]:
        rows = list(self.segment_rows(job_id))
        return {
            "input_tokens": sum(r.input_tokens for r in rows),
            "output_tokens": sum(r.output_tokens for r in rows),
            "video_tokens": sum(r.video_tokens for r in rows),
            "attempts": sum(r.attempts for r in rows),
            "http_attempts": sum(r.http_attempts for r in rows),
        }

    def claim_summary(self, job_id: str, owner: str | None = None, lease_s: float = 60.0) -> bool:
        with self.lock:
            active = any(r.state in ACTIVE_SEGMENT for r in self.segment_rows(job_id))
            if self.summary_state[job_id] != "none" or active:
                return False
            self.summary_state[job_id] = "claimed"
            return True

    def renew_summary(self, job_id: str, owner: str, lease_s: float) -> bool:
        return self.summary_state[job_id] == "claimed"

    def finish_job(
        self, job_id: str, summary: JobSummary, state: str, error: str | None = None, *, owner: str | None = None
    ) -> bool:
        with self.lock:
            self.summary_state[job_id] = "done"
            values: dict[str, Any] = {"summary": summary.as_dict(), "finished_at": _now()}
            if error is not None:
                values["error"] = error
            if self.jobs[job_id].state != "cancelled":
                values["state"] = state
            self._set(job_id, **values)
            return True

    def cancel_job(self, job_id: str) -> int:
        with self.lock:
            self.get_job(job_id)
            n = sum(self._update(job_id, i, ACTIVE_SEGMENT, state="cancelled") for i in list(self.segs[job_id]))
            if self.jobs[job_id].state not in TERMINAL_JOB:
                self._set(job_id, state="cancelled", finished_at=_now())
            return n

    def reset_failed(self, job_id: str) -> list[int]:
        with self.lock:
            idx = [i for i, s in self.segs[job_id].items() if s.row.state in ("failed", "cancelled")]
            for i in idx:
                self._update(job_id, i, ("failed", "cancelled"), state="pending", error=None)
            if idx:
                self.summary_state[job_id] = "none"
                self._set(job_id, state="queued", error=None, finished_at=None)
            return sorted(idx)

    def cancel_remaining(self, job_id: str, reason: str, *, only_if_cancelled: bool = False) -> int:
        with self.lock:
            if only_if_cancelled and self.jobs[job_id].state != "cancelled":
                return 0
            return sum(
                self._update(job_id, i, ACTIVE_SEGMENT, state="cancelled", error=reason)
                for i in list(self.segs[job_id])
            )

    def cancel_pending(self, job_id: str, reason: str) -> int:
        with self.lock:
            return sum(
                self._update(job_id, i, ("pending",), state="cancelled", error=reason) for i in list(self.segs[job_id])
            )

    def reserve_spend(
        self, job_id: str, key: str, index: int, calls: int, video_tokens: int, *, max_calls: int | None,
        max_video_tokens: int | None, ttl_s: float,
    ) -> tuple[int, int] | None:  # fmt: skip
        """As the SQL store: stored + live reservations (not expired or ``key``; segment active) + these."""
        with self.lock:
            ts = _now().timestamp()
            u, segs = self.usage(job_id), self.segs.get(job_id, {})
            live = [
                (c, v) for k, (j, i, c, v, until) in self.reservations.items()
                if j == job_id and (until >= ts or k == key) and i in segs and segs[i].row.state in ACTIVE_SEGMENT
            ]  # fmt: skip
            made = (u["http_attempts"] + sum(c for c, _ in live), u["video_tokens"] + sum(v for _, v in live))
            if (max_calls and made[0] + calls > max_calls) or (
                max_video_tokens and made[1] + video_tokens > max_video_tokens
            ):
                return made
            _, _, c, v, _ = self.reservations.get(key, (job_id, index, 0, 0, 0.0))
            self.reservations[key] = (job_id, index, c + calls, v + video_tokens, ts + ttl_s)
            return None

    def release_spend(self, key: str) -> None:
        with self.lock:
            self.reservations.pop(key, None)

    def delete_job(self, job_id: str) -> None:
        with self.lock:
            self.get_job(job_id)
            del self.jobs[job_id], self.segs[job_id], self.summary_state[job_id]

    def reopen_job(self, job_id: str) -> bool:
        with self.lock:
            job = self.get_job(job_id)
            if job.segment_count or job.state not in ("failed", "queued"):
                return False
            self.summary_state[job_id] = "none"
            self._set(job_id, state="queued", summary=None, error=None, finished_at=None)
            return True


class FakeReader:
    """A ``VideoReader`` of a synthetic video: ``duration_ms`` long, every frame the integer of its time."""

    def __init__(self, path: str, duration_ms: int = 12_000, fps: float = 25.0) -> None:
        self.path = Path(path)
        self.info = VideoInfo(duration_ms, fps, int(duration_ms * fps / 1000), 640, 360, "fake")
        self.closed = False

    def probe(self) -> VideoInfo:
        return self.info

    def frames(self, targets_ms: Sequence[int]) -> Iterator[tuple[int, Any]]:
        for t in targets_ms:
            yield t, t

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeFrames:
    """A ``FrameWriter`` that keeps frames in memory (paths are names, nothing touches the disk)."""

    def __init__(self) -> None:
        self.written: dict[str, list[FrameRef]] = {}

    def folder(self, job_id: str, index: int) -> Path:
        return Path("/fake") / job_id / f"seg_{index:05d}"

    def clear(self, folder: Path) -> None:
        self.written.pop(str(folder), None)

    def drop_job(self, job_id: str) -> None:
        for key in [k for k in self.written if f"/{job_id}/" in k]:
            del self.written[key]

    def write(self, folder: Path, n: int, t_ms: int, image: Any, budget: Any = None) -> FrameRef:
        ref = FrameRef(n=n, t_ms=t_ms, path=str(folder / f"frame_{n:04d}.jpg"), width=640, height=360, size_bytes=1)
        self.written.setdefault(str(folder), []).append(ref)
        return ref

    def encode(self, image: Any, budget: Any = None) -> tuple[bytes, int, int]:
        return b"jpeg", 640, 360

    def thumb(self, image: Any) -> Any:
        return image

    def review(self, image: Any, ref: FrameRef) -> bytes | None:
        return None


class FakeAnalyser:
    """No cuts and no motion; every thumb hashes differently (nothing is a near-duplicate)."""

    def analyse(self, reader: Any, start_ms: int, end_ms: int, motion: MotionParams) -> Findings:
        return Findings(start_ms=start_ms, until_ms=end_ms, cuts_ms=(), events=(), samples=0)

    def phash(self, thumb: Any) -> int:
        return hash(("frame", thumb)) & ((1 << 64) - 1)


class FakeDescriber:
    """Describes every segment as its span; ``video_tokens`` per call (as if billed); ``name`` selects
    the budget rules (``dashscope`` applies the caps)."""

    def __init__(self, name: str = "local", video_tokens: int = 0) -> None:
        self.name = name
        self.video_tokens = video_tokens
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def describe(self, request: DescribeRequest) -> Description:
        with self.lock:
            self.calls.append(request.plan.index)
        p = request.plan
        usage = Usage(10, 5, self.video_tokens, f"req-{p.index}", 1, 1, http_attempts=1)
        return Description(f"segment {p.index}: {p.start_ms}-{p.end_ms} ms", {}, self.name, "fake", usage)


class RecordingDescriber:
    """A describer that answers at once and records every request, its frames and thumbs (thread-safe)."""

    name = "counting"

    def __init__(self) -> None:
        self.requests: list[DescribeRequest] = []
        self._lock = threading.Lock()

    def describe(self, request: DescribeRequest) -> Description:
        with self._lock:
            self.requests.append(request)
        text = f"Segment {request.plan.index}: {len(request.frames)} frames at {request.fps:g} fps."
        usage = Usage(input_tokens=50, output_tokens=20, video_tokens=10 * len(request.frames))
        return Description(text, {}, describer=self.name, model="count-1", usage=usage)


@dataclass
class FakeEnqueuer:
    """The ``Enqueuer`` port: records what would be queued."""

    jobs: list[str] = field(default_factory=list)
    segments: list[tuple[str, int]] = field(default_factory=list)
    webhooks: list[str] = field(default_factory=list)
    fires: list[str] = field(default_factory=list)

    def enqueue_job(self, job_id: str) -> None:
        self.jobs.append(job_id)

    def enqueue_segment(self, job_id: str, index: int) -> None:
        self.segments.append((job_id, index))

    def send_webhook(self, job_id: str) -> None:
        self.webhooks.append(job_id)

    def fire_schedule(self, schedule_id: str) -> str:
        self.fires.append(schedule_id)
        return uuid.uuid4().hex

    def broker_ok(self) -> bool:
        return True

    def workers(self, timeout_s: float = 1.0) -> int:
        return 1

    def queue_depth(self) -> int | None:
        return len(self.jobs)

    def close(self) -> None:
        return None


def fake_ports(
    settings: Settings, describer: FakeDescriber | None = None, *, missing_key: bool = False, **reader: Any
) -> tuple[Ports, FakeStore, FakeEnqueuer]:
    """Ports over the fakes; ``missing_key``: building the describer fails as DashScope's does without a key."""
    store, enqueuer, desc = FakeStore(), FakeEnqueuer(), describer or FakeDescriber()

    def describer_for(opts: JobOptions) -> FakeDescriber:
        if missing_key:
            raise ConfigError("the dashscope describer needs an API key: set DASHSCOPE_API_KEY")
        return desc

    ports = Ports(
        settings=settings, store=store, describer_for=describer_for,
        reader_for=lambda path: FakeReader(path, **reader), frames=FakeFrames(), analyser=FakeAnalyser(),
        enqueuer=enqueuer,
    )  # fmt: skip
    return ports, store, enqueuer
