"""Timing, peak memory and result records shared by the benchmark modules."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass
class Measure:
    """One timed thing: every repetition's wall seconds (and peak RSS when it ran as a child process)."""

    name: str
    seconds: list[float] = field(default_factory=list)
    peak_rss_mib: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def rss(self) -> float:
        return max(self.peak_rss_mib) if self.peak_rss_mib else float("nan")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["median_s"] = round(self.median, 4)
        if self.peak_rss_mib:
            d["peak_rss_mib_max"] = round(self.rss, 1)
        d["seconds"] = [round(s, 4) for s in self.seconds]
        return d


@dataclass
class Goal:
    """A goal's verdict: ``ratio`` = ours / baseline, met when it is at most ``target``."""

    key: str
    title: str
    target: float | None
    ratio: float | None
    baseline: str
    ours: str
    note: str = ""
    measured: bool = True

    @property
    def met(self) -> bool | None:
        if not self.measured or self.ratio is None or self.target is None:
            return None
        return self.ratio <= self.target

    def line(self) -> str:
        if not self.measured:
            return f"{self.key} {self.title}: ratio not measured ({self.note})"
        verdict = {True: "MET", False: "NOT MET", None: "-"}[self.met]
        target = f"target ≤ {self.target:g}" if self.target is not None else "no target"
        ratio = f"{self.ratio:.3f}" if self.ratio is not None else "n/a"
        tail = f" — {self.note}" if self.note else ""
        head = f"{self.key} {self.title}: ratio {ratio} ({target}) {verdict}"
        return f"{head} | baseline {self.baseline} | ours {self.ours}{tail}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["met"] = self.met
        return d


TIME = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)


def child_env(**extra: str) -> dict[str, str]:
    """The environment a timed command runs in: the caller's, but with byte-code caches as an installed
    package has them (pip compiles at install). A caller's ``PYTHONDONTWRITEBYTECODE`` (set on this
    machine) would make every child compile each ``worker`` module it imports again (see ``compile_package``)."""
    env = {**os.environ, **extra}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_package() -> None:
    """Write the byte-code of ``worker`` and ``scheduler`` once, before any timing (as ``pip install`` does)."""
    import compileall

    for package in ("worker", "scheduler"):
        compileall.compile_dir(REPO / package, quiet=1)


def run_child(cmd: Sequence[str]) -> tuple[float, float, str]:
    """Run a command; returns (wall seconds, that command's peak RSS in MiB, stdout). Raises on failure.

    Peak RSS comes from GNU time (``%M``): a child forked straight from this process would count the pages
    it shares with us until it execs, so every child would look as big as the benchmark itself."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile() as rss:
        full = [TIME, "-f", "%M", "-o", rss.name, *cmd] if TIME else list(cmd)
        started = time.perf_counter()
        proc = subprocess.run(full, stdout=out, stderr=err, env=child_env(), cwd=REPO, check=False)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            tail = err.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {tail}")
        peak = float("nan")
        if TIME:
            lines = Path(rss.name).read_text().split()
            peak = int(lines[-1]) / 1024 if lines and lines[-1].isdigit() else float("nan")
        return wall, peak, out.read().decode(errors="replace")


def interleaved(reps: int, runs: dict[str, Callable[[], tuple[float, float]]]) -> dict[str, Measure]:
    """Run every entry once per repetition, in turn, so load changes hit all of them alike."""
    measures = {name: Measure(name) for name in runs}
    for _ in range(reps):
        for name, fn in runs.items():
            seconds, rss = fn()
            measures[name].seconds.append(seconds)
            if rss == rss:  # not NaN
                measures[name].peak_rss_mib.append(rss)
    return measures


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started, float("nan")


def machine() -> dict[str, Any]:
    """What the figures ran on."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()
        info["memory_gib"] = round(int(mem[1]) / 1024**2, 1)
    except OSError:
        pass
    try:
        first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=False).stdout
        info["ffmpeg"] = first.splitlines()[0] if first else "unknown"
    except OSError:
        info["ffmpeg"] = "missing"
    try:
        import av
        import cv2

        info["opencv"] = cv2.__version__
        info["pyav"] = av.__version__
    except ImportError:
        pass
    return info


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"
