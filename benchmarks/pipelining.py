"""Goal 5: a job's wall time against max(sampling time, ceil(segments / C) x L) with the fake DashScope.

The real pipeline (``pipeline.run_inline``) and the real DashScope describer (the ``dashscope`` SDK) talk to
``tests/fakes/dashscope_server.py`` (in its own process), which answers every model call after ``L`` seconds;
a counting wrapper around the describer records the calls in flight and how long each call took (``L`` plus
sending the frames: inside the request, or uploads for large segments). Beside the issue's bound, the note
gives the reachable one: the first C calls start only as their segments are sampled (fill) and the last
call only after the last segment (drain). Sampling time is the
same segments sampled alone (reader + JPEG writer) just before. The goal's clock starts with the describer
already built (as in a running worker) and stops when the last segment is stored; the job's summary call
(one more ``L``) is reported beside it. CPU seconds of our process (every thread) and of the fake (on the
same cores: an artefact of the benchmark, a real DashScope runs elsewhere) are in the note.

What the bound allows, by construction (quiet 2-core figures: 1 fps, 5 s segments, sampling 0.16 s a segment,
a call of L + 0.01 s for the request):
- describer-bound (L=2.5 s, C=4): the C-th call can start only once C segments are sampled (fill = sampling
  x C/n), and each slot then runs n/C calls back to back. A 60 s job (12 segments, 3 rounds): 0.63 + 3 x 2.53 =
  8.22 s against 1.1 x 7.5 = 8.25 s, 0.03 s left for anything else — unreachable. The whole 120 s file (24
  segments, 6 rounds): 0.63 + 6 x 2.53 = 15.8 s against 16.5 s. Real jobs are minutes long (more rounds), so
  the benchmark uses 120 s.
- decode-bound (L=0.1 s): the last call starts after the last segment is sampled (drain: one call, 0.16 s, 4.6 %
  of a 60 s job's 3.5 s, 2.3 % at 120 s), and the calls' own CPU (frame uploads, review copies, store writes,
  search embedding) and the fake's share the 2 cores with the decoder, which uses both.
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
from benchmarks.fake import CountingDescriber, fake_process
from worker.bootstrap import build_ports
from worker.config import Settings, load_settings
from worker.options import JobOptions
from worker.service import pipeline, runner


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


def sampling_alone(settings: Settings, video: Path, data: Path, opts: JobOptions) -> tuple[float, int, float]:
    """Seconds to sample every segment of the job (reader + JPEG writer, no describer), how many, CPU seconds."""
    ports = build_ports(settings)  # built before the clock, as the job's ports are
    cpu = time.process_time()
    started = time.perf_counter()
    count = 0
    with ports.reader_for(str(video)) as reader:
        info = reader.probe()
        for plan in pipeline.plans_for(info, opts, settings):
            pipeline.sample_segment(ports, reader, plan, data / "alone" / f"seg_{plan.index:05d}", opts)
            count += 1
    return time.perf_counter() - started, count, time.process_time() - cpu


def run_job(
    settings: Settings, video: Path, opts: JobOptions, counter: CountingDescriber | None = None
) -> tuple[float, float, int, CountingDescriber]:
    """(seconds until the last segment was stored, whole job seconds, segments done, the call counter)."""
    marks: list[float] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind in ("segment_done", "segment_failed"):
            marks.append(time.perf_counter())

    ports = build_ports(settings, on_event=on_event)
    if counter is None:  # the describer is built before the clock, as in a running worker
        counter = CountingDescriber(ports.describer_for(opts))
    ports = dataclasses.replace(ports, describer_for=lambda opts: counter)  # type: ignore[arg-type,return-value]
    job, _ = ports.store.create_job(str(video.resolve()), video.name, opts.stored())
    inner_sampling: list[float] = []
    sample = getattr(runner, "sample_segment")  # noqa: B009 (patched below: the job's own decoding)

    def timed_sample(*args: Any, **kwargs: Any) -> Any:  # the job's own decoding, beside its calls
        t = time.perf_counter()
        try:
            return sample(*args, **kwargs)
        finally:
            inner_sampling.append(time.perf_counter() - t)

    setattr(runner, "sample_segment", timed_sample)  # noqa: B010
    try:
        cpu = time.process_time()
        started = time.perf_counter()
        summary = pipeline.run_inline(ports, job.id)
        total = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        setattr(runner, "sample_segment", sample)  # noqa: B010
    segments_done = max(marks) - started if marks else total
    counter.sampling_in_job.append(sum(inner_sampling))
    counter.cpu_in_job.append(cpu)
    return segments_done, total, summary.segments_done, counter


def goal5(
    video: Path,
    work: Path,
    scenarios: list[Scenario],
    segment_seconds: float = 5.0,
    fps: float = 1.0,
    reps: int = 3,
    end_s: float | None = None,
) -> tuple[Goal, list[Measure]]:
    measures: list[Measure] = []
    notes: list[str] = []
    worst = 0.0
    opts = JobOptions(end_s=end_s)
    for k, s in enumerate(scenarios):
        alone = Measure(f"L={s.latency_s:g}s C={s.concurrency}: sampling alone")
        job = Measure(f"L={s.latency_s:g}s C={s.concurrency}: job until the last segment is stored")
        whole: list[float] = []
        cpu_alone: list[float] = []
        cpu_fake: list[float] = []
        counter: CountingDescriber | None = None
        with fake_process(s.latency_s) as fake:
            settings = _settings(work / f"g5-{k}", fake.url, s, segment_seconds, fps)
            for _ in range(reps):  # interleaved, so load changes hit both alike
                sample_s, n, cpu_s = sampling_alone(settings, video, work / f"g5-{k}", opts)
                fake_cpu = fake.cpu_s()
                seg_s, total_s, done, counter = run_job(settings, video, opts, counter)
                cpu_fake.append(fake.cpu_s() - fake_cpu)
                cpu_alone.append(cpu_s)
                alone.seconds.append(sample_s)
                job.seconds.append(seg_s)
                whole.append(total_s)
        assert counter is not None
        rounds = math.ceil(n / s.concurrency)
        bound = max(alone.median, rounds * s.latency_s)
        ratio = job.median / bound
        worst = max(worst, ratio)
        call_s = statistics.median(counter.durations) if counter.durations else float("nan")
        # What any pipeline on one decoder can reach: the last call starts after the last segment is sampled
        # (drain), and C calls are running only once C segments are sampled (fill).
        reachable = max(alone.median + call_s, alone.median * s.concurrency / n + rounds * call_s)
        effective = job.median / reachable
        kind = "describer-bound" if rounds * s.latency_s >= alone.median else "decode-bound"
        alone.note = f"{n} segments; CPU {fmt_s(statistics.median(cpu_alone))}"
        inside = statistics.median(counter.sampling_in_job) if counter.sampling_in_job else float("nan")
        job.note = (
            f"{done}/{n} done; whole job with its summary call {fmt_s(statistics.median(whole))}; "
            f"its own sampling took {fmt_s(inside)} beside the calls (alone {fmt_s(alone.median)}); CPU: "
            f"{cpu(counter.cpu_in_job)} in our process (alone {cpu(cpu_alone)}), {cpu(cpu_fake)} in the fake"
        )
        calls = Measure(f"L={s.latency_s:g}s C={s.concurrency}: one describer call", counter.durations)
        calls.note = f"L + sending the frames; at most {counter.peak} in flight"
        measures += [alone, job, calls]
        notes.append(
            f"{kind} L={s.latency_s:g}s C={s.concurrency}: {fmt_s(job.median)} vs max({fmt_s(alone.median)}, "
            f"{rounds}x{s.latency_s:g}s) = {ratio:.2f}; {effective:.2f} of the reachable "
            f"{fmt_s(reachable)} (fill + drain, calls of {call_s:.2f}s); at most {counter.peak} calls in flight; "
            f"CPU {cpu(counter.cpu_in_job)} (alone {cpu(cpu_alone)}) + the fake's {cpu(cpu_fake)}"
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


def cpu(seconds: list[float]) -> str:
    return fmt_s(statistics.median(seconds)) if seconds else "n/a"
