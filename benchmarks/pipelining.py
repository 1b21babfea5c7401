"""Goal 5: a job's wall time against max(sampling time, ceil(segments / C) x L) with the fake DashScope.

The real pipeline (``pipeline.run_inline``) and the real DashScope describer (the ``dashscope`` SDK) talk to
``tests/fakes/dashscope_server.py``, which answers every model call after ``L`` seconds. Sampling time is the
same segments sampled alone (reader + JPEG writer) just before. The goal's clock starts with the describer
already built (as in a running worker) and stops when the last segment is stored; the job's summary call
(one more ``L``) is reported beside it.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import Goal, Measure, fmt_s
from tests.fakes.dashscope_server import FakeDashScope
from worker import pipeline
from worker.config import Settings, load_settings
from worker.options import JobOptions
from worker.wiring import build_ports


@dataclass
class Scenario:
    latency_s: float
    concurrency: int


def _settings(data: Path, fake: FakeDashScope, s: Scenario, segment_seconds: float, fps: float) -> Settings:
    return load_settings(
        data_dir=data,
        describer={"kind": "dashscope", "concurrency": s.concurrency, "continuity": False},
        sampling={"fps": fps, "segment_seconds": segment_seconds, "cache_descriptions": False},
        dashscope={
            "api_key": f"sk-bench-{uuid.uuid4().hex[:8]}",
            "base_url": fake.base_http_api_url,
            "max_attempts": 1,
            "timeout_s": 60,
        },
    )


def sampling_alone(settings: Settings, video: Path, data: Path) -> tuple[float, int]:
    """Seconds to sample every segment of the job (reader + JPEG writer, no describer), and how many."""
    ports = build_ports(settings)
    started = time.perf_counter()
    count = 0
    with ports.reader_for(str(video)) as reader:
        info = reader.probe()
        for plan in pipeline.plans_for(info, JobOptions(), settings):
            pipeline.sample_segment(reader, plan, data / "alone" / f"seg_{plan.index:05d}", settings)
            count += 1
    return time.perf_counter() - started, count


def max_in_flight(fake: FakeDashScope, latency_s: float) -> int:
    """Most model calls the fake was answering at once (each is held ``latency_s`` after it arrives)."""
    starts = sorted(r.received_at for r in fake.requests if r.kind == "generation" and r.videos)
    best = 0
    for i, t in enumerate(starts):
        best = max(best, sum(1 for u in starts[: i + 1] if u > t - latency_s))
    return best


def run_job(settings: Settings, video: Path) -> tuple[float, float, int]:
    """(seconds until the last segment was stored, whole job seconds, segments done)."""
    marks: list[float] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind in ("segment_done", "segment_failed"):
            marks.append(time.perf_counter())

    ports = build_ports(settings, on_event=on_event)
    ports.describer_for(JobOptions())  # built before the clock, as in a running worker (the SDK import is slow)
    job, _ = ports.store.create_job(str(video.resolve()), video.name, JobOptions().stored())
    started = time.perf_counter()
    summary = pipeline.run_inline(ports, job.id)
    total = time.perf_counter() - started
    segments_done = max(marks) - started if marks else total
    return segments_done, total, summary.segments_done


def goal5(
    video: Path, work: Path, scenarios: list[Scenario], segment_seconds: float = 5.0, fps: float = 1.0
) -> tuple[Goal, list[Measure]]:
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    measures: list[Measure] = []
    notes: list[str] = []
    worst = 0.0
    for k, s in enumerate(scenarios):
        with FakeDashScope(latency_s=s.latency_s) as fake:
            data = work / f"g5-{k}"
            settings = _settings(data, fake, s, segment_seconds, fps)
            sample_s, n = sampling_alone(settings, video, data)
            fake.reset()
            seg_s, total_s, done = run_job(settings, video)
            flying = max_in_flight(fake, s.latency_s)
        calls = math.ceil(n / s.concurrency) * s.latency_s
        bound = max(sample_s, calls)
        ratio = seg_s / bound
        worst = max(worst, ratio)
        kind = "describer-bound" if calls >= sample_s else "decode-bound"
        measures += [
            Measure(f"L={s.latency_s:g}s C={s.concurrency}: sampling alone", [sample_s], note=f"{n} segments"),
            Measure(
                f"L={s.latency_s:g}s C={s.concurrency}: job until last segment stored",
                [seg_s],
                note=f"{done}/{n} done; whole job with summary call {fmt_s(total_s)}",
            ),
        ]
        notes.append(
            f"{kind} L={s.latency_s:g}s C={s.concurrency}: {fmt_s(seg_s)} vs max({fmt_s(sample_s)}, "
            f"{math.ceil(n / s.concurrency)}x{s.latency_s:g}s) = {ratio:.2f}, max {flying} calls in flight"
        )
    goal = Goal(
        "G5",
        f"pipelining, fake DashScope, {len(scenarios)} scenarios (worst)",
        1.1,
        worst,
        "max(sampling alone, ceil(segments/C) x L)",
        "pipeline.run_inline until the last segment is stored",
        "; ".join(notes),
    )
    return goal, measures
