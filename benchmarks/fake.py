"""The fake DashScope in its own process (``python -m tests.fakes.dashscope_server``), so its HTTP handling
does not share a GIL with the pipeline being timed — the real service is remote too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import PYTHON, REPO
from worker.core.models import Description
from worker.core.ports import Describer, DescribeRequest


@dataclass(frozen=True)
class FakeProcess:
    """The running fake: its native API base URL and process id (for its CPU time)."""

    url: str
    pid: int

    def cpu_s(self) -> float:
        """CPU seconds the fake has used so far (user + system, from /proc)."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def fake_dashscope(latency_s: float) -> Iterator[str]:
    """Start the fake answering model calls after ``latency_s``; yields its native API base URL."""
    with fake_process(latency_s) as fake:
        yield fake.url


@contextlib.contextmanager
def fake_process(latency_s: float) -> Iterator[FakeProcess]:
    """``fake_dashscope`` that also yields the process. Its CPU is on the same cores as the pipeline's, where a
    real DashScope's is on other machines: it runs at the lowest priority (its session's autogroup and itself
    at nice 19), so it takes only what the pipeline leaves; its CPU seconds are reported beside ours."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "tests.fakes.dashscope_server", "--port", "0", "--latency", f"{latency_s:g}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    lowest_priority(proc.pid)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if "base_http_api_url=" not in line:
            raise RuntimeError(f"the fake DashScope did not start: {line!r}")
        os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
        yield FakeProcess(line.split("=", 1)[1], proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session this benchmark created
            proc.wait(5)


def lowest_priority(pid: int) -> None:
    """nice 19 for ``pid`` and, under the kernel's autogroup scheduling (a new session is its own group,
    weighed against ours as a whole), for its group too; best effort."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, 19)
    with contextlib.suppress(OSError), open(f"/proc/{pid}/autogroup", "w", encoding="ascii") as fh:
        fh.write("19")


@dataclass
class CountingDescriber:
    """Wraps a describer: how many calls were in flight at most, and how long each took."""

    inner: Describer
    name: str = "counting"
    durations: list[float] = field(default_factory=list)
    peak: int = 0
    sampling_in_job: list[float] = field(default_factory=list)  # seconds the job spent sampling, per run
    cpu_in_job: list[float] = field(default_factory=list)  # CPU seconds of the job's process (every thread), per run
    _now: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.name = getattr(self.inner, "name", "counting")

    def describe(self, request: DescribeRequest) -> Description:
        with self._lock:
            self._now += 1
            self.peak = max(self.peak, self._now)
        started = time.perf_counter()
        try:
            return self.inner.describe(request)
        finally:
            with self._lock:
                self._now -= 1
                self.durations.append(time.perf_counter() - started)

    def __getattr__(self, item: str) -> Any:  # summary calls and other extras go to the real describer
        return getattr(self.inner, item)
