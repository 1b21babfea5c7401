"""Goals 1-4: sampling against ffmpeg, the keyframe fast path, the sparse-sampling cost model, flat memory."""

from __future__ import annotations

import csv
import math
import re
import shutil
import statistics
from collections.abc import Callable
from fractions import Fraction
from functools import partial
from pathlib import Path

from benchmarks.common import PYTHON, Goal, Measure, fmt_s, interleaved, run_child, timed
from worker.adapters.video import open_reader
from worker.adapters.video.opencv import OpenCVReader
from worker.adapters.video.pyav import PyAVReader
from worker.core.readplan import Strategy
from worker.core.sampling import sample_times

Result = tuple[Goal, list[Measure]]


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _child(cmd: list[str], out_dir: Path, inside: list[float] | None = None) -> Callable[[], tuple[float, float]]:
    """A timed child run; ``inside`` collects the in-process seconds ``framescribe sample`` reports."""

    def run() -> tuple[float, float]:
        _fresh(out_dir)  # outside the timing: the previous repetition's files
        wall, rss, stdout = run_child(cmd)
        seconds = in_process_seconds(stdout)
        if inside is not None and seconds is not None:
            inside.append(seconds)
        return wall, rss

    return run


def ffmpeg_fps(video: Path, out_dir: Path, fps: float = 1) -> list[str]:
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(video),
            "-vf", f"fps={fps:g}", "-q:v", "3", str(out_dir / "%06d.jpg")]  # fmt: skip


def ffmpeg_null(video: Path, *before_input: str) -> list[str]:
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", *before_input, "-i", str(video), "-f", "null", "-"]


def sample_cmd(video: Path, out_dir: Path, fps: float = 1, *extra: str) -> list[str]:
    """``framescribe sample`` as a user runs it (a fresh Python process; start-up included)."""
    return [PYTHON, "-m", "worker.cli_sample", str(video), "--fps", f"{fps:g}", "--out", str(out_dir), *extra]


def csv_times(folder: Path) -> list[int]:
    with (folder / "frames.csv").open(encoding="utf-8") as fh:
        return [int(row["pts_ms"]) for row in csv.DictReader(fh)]


def in_process_seconds(stdout: str) -> float | None:
    m = re.search(r" in ([0-9.]+)s", stdout)
    return float(m.group(1)) if m else None


def goal1(video: Path, label: str, work: Path, reps: int) -> Result:
    """Sampling + JPEG at 1 fps on a long-GOP file vs ``ffmpeg -vf fps=1``."""
    inside: list[float] = []
    runs = {
        "ffmpeg -vf fps=1 -q:v 3 (JPEG)": _child(ffmpeg_fps(video, work / "ff"), work / "ff"),
        "framescribe sample --fps 1": _child(sample_cmd(video, work / "fs"), work / "fs", inside),
        "framescribe sample --fps 1 --backend opencv": _child(
            sample_cmd(video, work / "cv", 1, "--backend", "opencv"), work / "cv"
        ),
    }
    m = interleaved(reps, runs)
    base, ours = m["ffmpeg -vf fps=1 -q:v 3 (JPEG)"], m["framescribe sample --fps 1"]
    ours.note = f"in process (no start-up) {fmt_s(statistics.median(inside))}" if inside else ""
    ratio = ours.median / base.median
    counts = (len(list((work / "ff").glob("*.jpg"))), len(csv_times(work / "fs")))
    goal = Goal(
        "G1",
        f"sample+JPEG 1 fps, {label}",
        0.85,
        ratio,
        f"ffmpeg -vf fps=1 {fmt_s(base.median)}",
        f"framescribe sample {fmt_s(ours.median)}",
        f"frames written ffmpeg/ours {counts[0]}/{counts[1]}; OpenCV backend "
        f"{m['framescribe sample --fps 1 --backend opencv'].median / base.median:.2f}x; start-up included",
    )
    return goal, list(m.values())


def goal2(video: Path, label: str, work: Path, reps: int) -> Result:
    """Keyframes on the targets (GOP 30 at 1 fps): the default command, no flag, vs ``ffmpeg -vf fps=1``;
    its frames must be the exact-decoding frames (same times as OpenCV's sequential read)."""
    inside: list[float] = []
    nokey = ffmpeg_null(video, "-skip_frame", "nokey")
    runs = {
        "ffmpeg -vf fps=1 -q:v 3 (JPEG)": _child(ffmpeg_fps(video, work / "ff2"), work / "ff2"),
        "framescribe sample --fps 1 (default)": _child(sample_cmd(video, work / "kf"), work / "kf", inside),
        "framescribe sample --fps 1 --keyframes": _child(sample_cmd(video, work / "kt", 1, "--keyframes"), work / "kt"),
        "ffmpeg -skip_frame nokey -f null (keyframes only)": lambda: run_child(nokey)[:2],
    }
    m = interleaved(reps, runs)
    base, ours = m["ffmpeg -vf fps=1 -q:v 3 (JPEG)"], m["framescribe sample --fps 1 (default)"]
    ours.note = f"in process (no start-up) {fmt_s(statistics.median(inside))}" if inside else ""
    got = csv_times(work / "kf")
    with OpenCVReader(video) as r:
        duration = r.probe().duration_ms
        targets = list(sample_times(0, duration, Fraction(1)))
        exact = [t for t, _ in r.frames(targets)]
    with open_reader(video) as r:
        r.probe()
        plan = r.plan(targets)  # type: ignore[attr-defined]
    same = "same times as exact decoding" if got == exact else f"DIFFERENT times from exact decoding ({len(got)})"
    goal = Goal(
        "G2",
        f"keyframes on the targets, default command, 1 fps, {label}",
        0.2,
        ours.median / base.median,
        f"ffmpeg -vf fps=1 {fmt_s(base.median)}",
        f"framescribe sample {fmt_s(ours.median)}",
        f"{len(got)}/{len(targets)} frames, {same}; plan {plan.strategy}; --keyframes "
        f"{m['framescribe sample --fps 1 --keyframes'].median / base.median:.2f}x; ffmpeg keyframes-only decode "
        f"{fmt_s(m['ffmpeg -skip_frame nokey -f null (keyframes only)'].median)}",
    )
    return goal, list(m.values())


def _consume(make: Callable[[], object], targets: list[int], strategy: Strategy | None) -> Callable[[], object]:
    def run() -> int:
        reader = make()
        try:
            frames = reader.frames(targets) if strategy is None else reader.frames(targets, strategy=strategy)  # type: ignore[attr-defined]
            return sum(1 for _ in frames)
        finally:
            reader.close()  # type: ignore[attr-defined]

    return run


def goal3(files: dict[str, Path], reps: int, seconds: float = 60.0, fps: Fraction = Fraction(1, 5)) -> Result:
    """Sparse sampling: the planned read vs the better of forced seek and forced sequential decoding."""
    measures: list[Measure] = []
    worst = 0.0
    notes = []
    for label, path in files.items():
        with open_reader(path) as r:
            end = min(r.probe().duration_ms, round(seconds * 1000))
        targets = list(sample_times(0, end, fps))
        runs = {
            f"{label}: opencv sequential": timed_run(partial(OpenCVReader, path), targets, Strategy.SEQUENTIAL),
            f"{label}: pyav sequential": timed_run(partial(PyAVReader, path), targets, Strategy.SEQUENTIAL),
            f"{label}: pyav seek": timed_run(partial(PyAVReader, path), targets, Strategy.SEEK),
            f"{label}: auto (cost model)": timed_run(partial(open_reader, path), targets, None),
        }
        m = interleaved(reps, runs)
        with open_reader(path) as r:
            plan = r.plan(targets)  # type: ignore[attr-defined]
        m[f"{label}: auto (cost model)"].note = f"chose {plan.backend}/{plan.strategy}"
        best_name = min((n for n in m if "auto" not in n), key=lambda n: m[n].median)
        ratio = m[f"{label}: auto (cost model)"].median / m[best_name].median
        worst = max(worst, ratio)
        notes.append(f"{label}: {ratio:.2f} vs {best_name.split(': ')[1]} (auto chose {plan.backend}/{plan.strategy})")
        measures.extend(m.values())
    goal = Goal(
        "G3",
        f"sparse sampling {float(fps):g} fps over {seconds:g} s, worst of {len(files)} files",
        1.1,
        worst,
        "best of forced seek/sequential (OpenCV, PyAV)",
        "open_reader auto",
        "; ".join(notes),
    )
    return goal, measures


def timed_run(
    make: Callable[[], object], targets: list[int], strategy: Strategy | None
) -> Callable[[], tuple[float, float]]:
    fn = _consume(make, targets, strategy)
    return lambda: timed(fn)


def goal4(short: Path, long: Path, labels: tuple[str, str], work: Path) -> Result:
    """Peak RSS of ``framescribe sample --fps 1`` on a long video vs a short one of the same format."""
    m = {}
    for name, video in (("short", short), ("long", long)):
        out = _fresh(work / f"mem-{name}")
        wall, rss, _ = run_child(sample_cmd(video, out))
        frames = len(csv_times(out))
        m[name] = Measure(f"framescribe sample --fps 1, {labels[0 if name == 'short' else 1]}", [wall], [rss],
                          f"{frames} JPEGs")  # fmt: skip
        shutil.rmtree(out, ignore_errors=True)
    ratio = m["long"].rss / m["short"].rss
    goal = Goal(
        "G4",
        "peak RSS, sampling a long video vs a short one",
        1.1,
        ratio,
        f"{labels[0]}: {m['short'].rss:.0f} MiB",
        f"{labels[1]}: {m['long'].rss:.0f} MiB",
        f"walls {fmt_s(m['short'].median)} / {fmt_s(m['long'].median)}",
    )
    return goal, list(m.values())


def per_video_second(measure: Measure, seconds: float) -> float:
    return measure.median / seconds if seconds > 0 and not math.isnan(measure.median) else float("nan")


def in_process_median(measure: Measure) -> float:
    """The in-process seconds noted on a ``framescribe sample`` measure (else its wall time)."""
    m = re.search(r"no start-up\) ([0-9.]+) s", measure.note)
    return float(m.group(1)) if m else measure.median
