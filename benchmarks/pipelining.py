"""Goal 5: a job's wall time against max(sampling time, ceil(segments / C) x L) with the fake DashScope.

The real pipeline (``pipeline.run_inline``) and the real DashScope describer (the ``dashscope`` SDK) talk to
``tests/fakes/dashscope_server.py`` (in its own process), which answers every model call after ``L`` seconds;
a counting wrapper around the describer records the calls in flight and how long each call took (``L`` plus
the SDK's frame uploads). Sampling time is the
same segments sampled alone (reader + JPEG writer) just before. The goal's clock starts with the describer
already built (as in a running worker) and stops when the last segment is stored; the job's summary call
(one more ``L``) is reported beside it.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import Goal, Measure, fmt_s
from benchmarks.fake import CountingDescriber, fake_dashscope
from worker import pipeline
from worker.config import Settings, load_settings
from worker.options import JobOptions
from worker.wiring import build_ports


@dataclass
class Scenario:
    latency_s: float
    concurrency: int


def _settings(data: Path, base_url: str, s: Scenario, segment_seconds: float, fps: float) -> Settings:
    return load_settings(
        data_dir=data,
        describer={"kind": "dashscope", "concurrency": s.concurrency, "continuity": False},
        sampling={"fps": fps, "segment_seconds": segment_seconds, "cache_descriptions": False},
        dashscope={
            "api_key": f"sk-bench-{uuid.uuid4().hex[:8]}",
            "base_url": base_url,
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


def run_job(settings: Settings, video: Path) -> tuple[float, float, int, CountingDescriber]:
    """(seconds until the last segment was stored, whole job seconds, segments done, the call counter)."""
    marks: list[float] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind in ("segment_done", "segment_failed"):
            marks.append(time.perf_counter())

    ports = build_ports(settings, on_event=on_event)
    counter = CountingDescriber(ports.describer_for(JobOptions()))  # built before the clock, as in a worker
    ports = dataclasses.replace(ports, describer_for=lambda opts: counter)  # type: ignore[arg-type,return-value]
    job, _ = ports.store.create_job(str(video.resolve()), video.name, JobOptions().stored())
    started = time.perf_counter()
    summary = pipeline.run_inline(ports, job.id)
    total = time.perf_counter() - started
    segments_done = max(marks) - started if marks else total
    return segments_done, total, summary.segments_done, counter


def goal5(
    video: Path, work: Path, scenarios: list[Scenario], segment_seconds: float = 5.0, fps: float = 1.0
) -> tuple[Goal, list[Measure]]:
    measures: list[Measure] = []
    notes: list[str] = []
    worst = 0.0
    for k, s in enumerate(scenarios):
        with fake_dashscope(s.latency_s) as url:
            data = work / f"g5-{k}"
            settings = _settings(data, url, s, segment_seconds, fps)
            sample_s, n = sampling_alone(settings, video, data)
            seg_s, total_s, done, counter = run_job(settings, video)
        rounds = math.ceil(n / s.concurrency)
        bound = max(sample_s, rounds * s.latency_s)
        ratio = seg_s / bound
        worst = max(worst, ratio)
        call_s = statistics.median(counter.durations) if counter.durations else float("nan")
        effective = seg_s / max(sample_s, rounds * call_s)
        kind = "describer-bound" if rounds * s.latency_s >= sample_s else "decode-bound"
        measures += [
            Measure(f"L={s.latency_s:g}s C={s.concurrency}: sampling alone", [sample_s], note=f"{n} segments"),
            Measure(
                f"L={s.latency_s:g}s C={s.concurrency}: job until last segment stored",
                [seg_s],
                note=f"{done}/{n} done; whole job with summary call {fmt_s(total_s)}",
            ),
            Measure(
                f"L={s.latency_s:g}s C={s.concurrency}: one describer call (median)", [call_s], note="L + frame uploads"
            ),
        ]
        notes.append(
            f"{kind} L={s.latency_s:g}s C={s.concurrency}: {fmt_s(seg_s)} vs max({fmt_s(sample_s)}, "
            f"{rounds}x{s.latency_s:g}s) = {ratio:.2f} ({effective:.2f} with the measured call time "
            f"{call_s:.2f}s), at most {counter.peak} calls in flight"
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
