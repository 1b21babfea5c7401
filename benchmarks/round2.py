"""Issue 19's goals that issue 10's benchmarks did not measure: quick commands (R3), no work done twice
(R4) and long-GOP sampling under load (R6). Every ratio has its baseline measured in the same run.

- R3: CPU seconds (user + sys, the kernel's accounting of the finished child) of ``framescribe --help``,
  ``status``, ``jobs list`` and ``show`` against ``python -c "import typer"``, interleaved. Wall time is
  recorded too, but on a shared machine CPU time is the steadier figure.
- R4: in one process, a scene job's video is probed (the PyAV head/tail demux) how many times from the
  check before the job exists to the last segment; a plan task delivered again against the first plan; and
  the decoding left after the analysis pass when it hands the segments their frames, against the same job
  with the hand-over off (interleaved, ``--reps`` times).
- R6: goal 2 (``framescribe sample`` vs ``ffmpeg -vf fps=1`` on GOP 250, start-up included) quiet and with
  ``yes > /dev/null`` busy on one core, interleaved in the same rounds: both ratios, with CPU seconds and
  thread counts of both sides (under a hog, CPU is shared per runnable thread).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import sampling
from benchmarks.common import PYTHON, REPO, Goal, Measure, child_env, fmt_s

Result = tuple[Goal, list[Measure]]


def cpu_run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child run; its output is discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def _framescribe() -> list[str]:
    script = Path(PYTHON).with_name("framescribe")
    return [str(script)] if script.exists() else [PYTHON, "-m", "worker.cli"]


def _stored_job(data: Path) -> str:
    from worker.adapters.stores.sql import SqlResultStore
    from worker.core.models import SegmentPlan, VideoInfo

    store = SqlResultStore(f"sqlite:///{data / 'framescribe.db'}")
    job, _ = store.create_job(str(data / "clip.mp4"), "clip.mp4", {"fps": 1.0})
    plans = [SegmentPlan(i, i * 10_000, (i + 1) * 10_000, 1, tuple(range(i * 10_000, (i + 1) * 10_000, 1000)))  # type: ignore[arg-type]
             for i in range(6)]  # fmt: skip
    store.plan_job(job.id, VideoInfo(60_000, 30.0, 1800, 1280, 720, "avc1"), plans)
    store.engine.dispose()
    return job.id


def startup(work: Path, reps: int) -> Result:
    """R3: quick commands against ``python -c "import typer"`` (CPU time, same run, interleaved)."""
    data = work / "r3-data"
    data.mkdir(parents=True, exist_ok=True)
    job_id = _stored_job(data)
    env = child_env(FRAMESCRIBE_DATA_DIR=str(data), FRAMESCRIBE_CONFIG=str(REPO / "configs/default.yaml"))
    fs = _framescribe()
    cmds = {
        'python -c "import typer"': [PYTHON, "-c", "import typer"],
        "framescribe --help": [*fs, "--help"],
        "framescribe status JOB": [*fs, "status", job_id],
        "framescribe jobs list": [*fs, "jobs", "list"],
        "framescribe show JOB": [*fs, "show", job_id],
    }
    cpu = {name: Measure(f"{name} (CPU s)") for name in cmds}
    wall = {name: Measure(f"{name} (wall s)") for name in cmds}
    for cmd in cmds.values():  # warm the page cache and the byte-code files
        cpu_run(cmd, env)
    for _ in range(max(5, reps * 2)):
        for name, cmd in cmds.items():
            c, w = cpu_run(cmd, env)
            cpu[name].seconds.append(c)
            wall[name].seconds.append(w)
    base = cpu['python -c "import typer"'].median
    ratios = {name: cpu[name].median / base for name in cmds if name.startswith("framescribe")}
    for name, r in ratios.items():
        cpu[name].note = f"{r:.2f}x import typer"
    worst = max(ratios, key=lambda n: ratios[n])
    goal = Goal(
        "R3",
        "quick commands vs python -c 'import typer' (CPU time), worst of 4",
        1.5,
        ratios[worst],
        f"import typer {fmt_s(base)} CPU",
        f"{worst} {fmt_s(cpu[worst].median)} CPU",
        "; ".join(f"{n.removeprefix('framescribe ')} {r:.2f}x" for n, r in ratios.items()),
    )
    return goal, [*cpu.values(), *wall.values()]


@contextmanager
def _counting_probes() -> Iterator[dict[str, int]]:
    """Counts the PyAV and OpenCV probes' expensive steps (head/tail demux) in this process."""
    from worker.adapters.video import probes
    from worker.adapters.video.opencv import OpenCVReader
    from worker.adapters.video.pyav import PyAVReader

    counts = {"probes": 0}
    facts, duration = PyAVReader._measure_facts, OpenCVReader._true_duration_ms

    def count_facts(self: Any, fps: float) -> Any:
        counts["probes"] += 1
        return facts(self, fps)

    def count_duration(self: Any, fps: float, n: int) -> int:
        counts["probes"] += 1
        return duration(self, fps, n)

    probes.forget()
    PyAVReader._measure_facts = count_facts  # type: ignore[method-assign]
    OpenCVReader._true_duration_ms = count_duration  # type: ignore[method-assign,assignment]
    try:
        yield counts
    finally:
        PyAVReader._measure_facts = facts  # type: ignore[method-assign]
        OpenCVReader._true_duration_ms = duration  # type: ignore[method-assign]
        probes.forget()


def no_work_twice(video: Path, work: Path, seconds: float, reps: int = 1) -> Result:
    """R4: probes per embedded scene job, a redelivered plan task against the first plan, and the decoding
    left after the analysis pass with its frames handed over against the same job with the hand-over off."""
    from worker.bootstrap import drain, inline_ports
    from worker.config import load_settings
    from worker.options import JobOptions
    from worker.service import jobs
    from worker.service import plan as planning
    from worker.service.sources import Source

    settings = load_settings(data_dir=work / "r4-data", describer={"kind": "local"})
    opts = JobOptions(fps=1, segment_seconds=10, segmenter="scene", end_s=seconds)
    source = Source(str(video), video.name)
    with _counting_probes() as counts:
        ports = inline_ports(settings)
        with ports.reader_for(str(video)) as reader:  # framescribe run's check before the job exists
            planning.check_budget(planning.estimate(reader.probe(), opts, settings), opts, settings)
        job, _ = jobs.create(ports, source, opts)
        jobs.run(ports, job.id)
        drain(ports)
        probed = counts["probes"]
    runs: dict[str, dict[str, list[float]]] = {mode: {} for mode in ("off", "on")}
    for rep in range(max(1, reps)):  # interleaved, the order swapped every repetition
        for mode in ("off", "on") if rep % 2 == 0 else ("on", "off"):
            got = runs[mode]
            ports = inline_ports(settings)
            if mode == "off":
                ports.handover = None
            for key, value in _after_analysis(ports, source, opts, decode_only=mode == "off").items():
                got.setdefault(key, []).append(value)
            drain(ports)
    return _r4_result(runs, probed, seconds)


def _after_analysis(ports: Any, source: Any, opts: Any, decode_only: bool) -> dict[str, float]:
    """One scene job planned (probe + analysis pass, which hands its frames over unless ``ports.handover``
    is None), planned again (a redelivery), then its segments sampled: seconds, and frames decoded after the
    pass. ``decode_only``: also the seconds to only decode the segments' frames again (no JPEG)."""
    from worker.service import jobs
    from worker.service import plan as planning
    from worker.service.segment import sample_segment

    job, _ = jobs.create(ports, source, opts)
    t = time.perf_counter()
    indexes = planning.plan(ports, job.id)
    first = time.perf_counter() - t
    t = time.perf_counter()
    planning.plan(ports, job.id)  # the same task delivered again
    again = time.perf_counter() - t
    store = ports.store
    plans = [planning.plan_of_row(store, job.id, i) for i in indexes if store.segment_state(job.id, i) == "pending"]
    out = {"first": first, "again": again}
    with _counting_decodes() as decoded:
        t = time.perf_counter()
        with ports.open_source(job) as reader:
            for plan in plans:  # static spans (not pending) have no frames
                sample_segment(ports, reader, plan, ports.frames.folder(job.id, plan.index), opts)
        out["sample"] = time.perf_counter() - t
        out["decoded"] = decoded["frames"]
        out["frames"] = sum(p.frame_count for p in plans)
    if decode_only:
        t = time.perf_counter()
        with ports.open_source(job) as reader:
            for plan in plans:
                for _ in reader.frames(plan.targets_ms):
                    pass
        out["decode"] = time.perf_counter() - t
    jobs.cancel(ports, job.id)
    return out


def _r4_result(runs: dict[str, dict[str, list[float]]], probed: int, seconds: float) -> Result:
    off, on = runs["off"], runs["on"]

    med = statistics.median

    first, again, decode = med(off["first"]), med(off["again"]), med(off["decode"])
    share = decode / (first + decode) if first + decode > 0 else float("nan")
    total_off = med([a + b for a, b in zip(off["first"], off["sample"], strict=True)])
    total_on = med([a + b for a, b in zip(on["first"], on["sample"], strict=True)])
    m = [Measure("scene job: first plan (probe + analysis pass), hand-over off", off["first"]),
         Measure("scene job: first plan (probe + analysis pass + kept frames), hand-over on", on["first"]),
         Measure("scene job: plan task delivered again", off["again"] + on["again"]),
         Measure("scene job: sampling its segments after the analysis pass, hand-over off", off["sample"]),
         Measure("scene job: sampling its segments after the analysis pass, hand-over on", on["sample"]),
         Measure("scene job: decoding its segments' frames again (no JPEG), hand-over off", off["decode"])]  # fmt: skip
    goal = Goal(
        "R4",
        f"no work done twice: redelivered plan vs first plan (scene, {seconds:g} s)",
        0.05,
        again / first,
        f"first plan {fmt_s(first)}",
        f"again {fmt_s(again)}",
        f"video probed {probed}x in one embedded scene job (check before the job, plan, analysis, sampling). "
        f"After the analysis pass, hand-over off: {med(off['decoded']):.0f} of {med(off['frames']):.0f} frames "
        f"decoded again, sampling {fmt_s(med(off['sample']))} (decoding alone {fmt_s(decode)}, {share:.0%} of the "
        f"job's decoding); hand-over on: {med(on['decoded']):.0f} decoded again, sampling "
        f"{fmt_s(med(on['sample']))} (ratio {med(on['sample']) / med(off['sample']):.2f}); plan + sampling "
        f"{fmt_s(total_on)} on vs {fmt_s(total_off)} off (ratio {total_on / total_off:.2f})",
    )
    return goal, m


@contextmanager
def _counting_decodes() -> Iterator[dict[str, int]]:
    """Counts the frames both readers yield in this process (every one was decoded for a target)."""
    from worker.adapters.video.opencv import OpenCVReader
    from worker.adapters.video.pyav import PyAVReader

    counts = {"frames": 0}
    originals = {cls: cls.frames for cls in (PyAVReader, OpenCVReader)}

    def counted(original: Any) -> Any:
        def frames(self: Any, *a: Any, **k: Any) -> Iterator[Any]:
            for item in original(self, *a, **k):
                counts["frames"] += 1
                yield item

        return frames

    for cls, original in originals.items():
        cls.frames = counted(original)  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        for cls, original in originals.items():
            cls.frames = original  # type: ignore[method-assign]


@contextmanager
def cpu_hog() -> Iterator[None]:
    """``yes > /dev/null`` busy on one core for the block."""
    hog = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def traced_run(cmd: list[str]) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, most threads seen) of one child run; its output is discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=child_env())
    most = 0
    while proc.poll() is None:
        most = max(most, _threads(proc.pid))
        time.sleep(0.05)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode})")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall, most


def under_load(video: Path, label: str, work: Path, reps: int) -> Result:
    """R6: goal 2 (``sample`` vs ``ffmpeg -vf fps=1``, GOP 250) quiet and with ``yes`` busy on one core, in
    interleaved rounds (ffmpeg, ours quiet; then ffmpeg, ours with the hog), so both ratios share a baseline
    run; wall time, CPU time (the children's rusage) and the most threads each process ran."""
    cmds = {"ffmpeg": sampling.ffmpeg_fps(video, work / "ff"), "ours": sampling.sample_cmd(video, work / "fs")}
    stats: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    for _ in range(max(3, reps)):
        for cond in ("quiet", "hog"):
            for name, cmd in cmds.items():
                sampling._fresh(work / ("ff" if name == "ffmpeg" else "fs"))
                if cond == "hog":
                    with cpu_hog():
                        stats.setdefault((cond, name), []).append(traced_run(cmd))
                else:
                    stats.setdefault((cond, name), []).append(traced_run(cmd))
    measures = []
    med: dict[tuple[str, str], tuple[float, float, int]] = {}
    for (cond, name), runs in stats.items():
        cpu, wall, threads = (statistics.median(r[i] for r in runs) for i in range(3))
        med[cond, name] = (cpu, wall, round(threads))
        who = "ffmpeg -vf fps=1 -q:v 3" if name == "ffmpeg" else "framescribe sample --fps 1"
        where = "hog on 1 core" if cond == "hog" else "quiet"
        measures.append(Measure(f"({where}) {who}", [r[1] for r in runs], [],
                                f"CPU {fmt_s(cpu)}, up to {round(threads)} threads"))  # fmt: skip
    ratio = {c: med[c, "ours"][1] / med[c, "ffmpeg"][1] for c in ("quiet", "hog")}
    cpu_ratio = {c: med[c, "ours"][0] / med[c, "ffmpeg"][0] for c in ("quiet", "hog")}

    def side(cond: str, name: str) -> str:
        cpu, wall, threads = med[cond, name]
        return f"{fmt_s(wall)} wall, {fmt_s(cpu)} CPU, {threads} threads"

    goal = Goal(
        "R6",
        f"goal 2 with yes > /dev/null on 1 of {os.cpu_count()} cores, {label}",
        0.7,
        ratio["hog"],
        f"ffmpeg -vf fps=1 {side('hog', 'ffmpeg')}",
        f"framescribe sample {side('hog', 'ours')}",
        f"quiet in the same rounds {ratio['quiet']:.3f} (ffmpeg {side('quiet', 'ffmpeg')}; ours "
        f"{side('quiet', 'ours')}); CPU ratio quiet {cpu_ratio['quiet']:.2f}, hog {cpu_ratio['hog']:.2f}; "
        f"load {os.getloadavg()[0]:.1f}",
    )
    return goal, measures


TARGETS = {"1": 0.2, "2": 0.7, "3": 1.5, "4": 0.05, "5": 1.1, "6": 0.7}
ROWS = [  # (issue 19 goal, the measurement that answers it, what it compares)
    ("1", "G2", "keyframe path by default (GOP 30, 1 fps) vs ffmpeg -vf fps=1"),
    ("2", "G1", "long GOP (GOP 250, 1 fps, start-up included) vs ffmpeg -vf fps=1"),
    ("3", "R3", "quick commands vs python -c 'import typer' (CPU time)"),
    ("4", "R4", "no work done twice: redelivered plan / first plan"),
    ("5", "G5", "pipelining: job wall / max(sampling, ceil(n/C)·L)"),
    ("6", "R6", "under load (a hog on one core): long GOP vs ffmpeg -vf fps=1"),
]


def round2_lines(goals: dict[str, Goal]) -> list[str]:
    """Issue 19's six goals, each from this run's figures (targets as the issue states them)."""
    lines = []
    for n, key, title in ROWS:
        g = goals.get(key)
        if g is None or not g.measured or g.ratio is None:
            lines.append(f"issue 19 goal {n} ({key}) {title}: not measured in this run")
            continue
        verdict = "MET" if g.ratio <= TARGETS[n] else "NOT MET"
        lines.append(f"issue 19 goal {n} ({key}) {title}: {g.ratio:.3f} (≤ {TARGETS[n]:g}) {verdict} | "
                     f"baseline {g.baseline} | ours {g.ours}")  # fmt: skip
    return lines
