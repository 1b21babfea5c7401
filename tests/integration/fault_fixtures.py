"""Fault and load harness on top of celery_fixtures.py: what those fixtures do not already give.

* ``fault_cluster``: real workers (as ``celery_fixtures.cluster``) but with per-worker environments (one
  worker under libfaketime), other time limits, Redis DB 15 (this suite's) or a private redis-server.
* ``PgCluster``: a private PostgreSQL cluster (``initdb`` as user postgres, free port) that a test may stop
  and start; the shared server on 5432 is never touched.
* ``tmpfs``: a small tmpfs mounted over a folder (disk-full tests), unmounted afterwards.
* ``faketime_env``: LD_PRELOAD of libfaketime (PyPI ``libfaketime`` ships the library) with a clock file a
  test rewrites to make the worker's wall clock jump while it runs.
* /proc helpers: worker RSS, pool children, which process has a TCP connection to a port.
* ``redis_audit``: keys without a TTL, queue lengths; ``assert_job_clean``: the four fault invariants.
* ``write_figures``: JSON figures for ``scripts/reliability-report`` ($FRAMESCRIBE_FIGURES_DIR).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fakes.dashscope_server import FakeDashScope
from tests.integration.celery_fixtures import (
    SHARED_REDIS,
    WORKER_LIMITS,
    Cluster,
    Worker,
    _clear_queue,
    answering,
    free_port,
    wait_for,
    worker_env,
)
from worker.adapters.stores.sql import SqlResultStore
from worker.config import load_settings

FAULT_DB = 15  # the Redis DB of the fault and load tests (private redis-servers aside)
FAULT_REDIS = f"{SHARED_REDIS}/{FAULT_DB}"
TERMINAL = ("done", "partial", "failed", "cancelled")


# -- clusters ---------------------------------------------------------------------------------
def dashscope_env(fake: FakeDashScope, key: str, **settings: Any) -> dict[str, str]:
    """Worker environment that sends ``describer: dashscope`` jobs to ``fake`` (no cache: every job calls)."""
    env = {
        "FRAMESCRIBE_DASHSCOPE__API_KEY": key,
        "FRAMESCRIBE_DASHSCOPE__BASE_URL": fake.base_http_api_url,
        "FRAMESCRIBE_DASHSCOPE__BACKOFF_BASE_S": "0.3",
        "FRAMESCRIBE_DASHSCOPE__BACKOFF_MAX_S": "1",
        "FRAMESCRIBE_DASHSCOPE__MAX_ATTEMPTS": "6",
        "FRAMESCRIBE_DASHSCOPE__TIMEOUT_S": "2",
        # these clusters ride faults out; the circuit breaker (which stops the job instead) is tested
        # in test_dashscope_spend.py with its own setting
        "FRAMESCRIBE_DASHSCOPE__BREAKER_FAILURES": "1000",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    env.update({f"FRAMESCRIBE_DASHSCOPE__{k.upper()}": str(v) for k, v in settings.items()})
    return env


@contextlib.contextmanager
def fault_cluster(
    tmp: Path,
    *,
    database_url: str | None = None,
    broker_url: str = FAULT_REDIS,
    workers: int = 2,
    limits: dict[str, int] | None = None,
    worker_extra: list[dict[str, str]] | None = None,
    env: dict[str, str] | None = None,
    concurrency: int = 1,
) -> Iterator[Cluster]:
    """``workers`` real workers (``concurrency`` processes each) on a unique queue; ``env`` is added to
    every worker's environment and ``worker_extra[i]`` to worker i's.

    The description cache is off, so every job really calls its describer."""
    if broker_url.startswith(SHARED_REDIS) and not answering(6379):
        pytest.skip("Redis is not answering on 127.0.0.1:6379 (scripts/services starts it)")
    limits = {**WORKER_LIMITS, **(limits or {})}
    queue = f"fs-fault-{uuid.uuid4().hex[:12]}"
    database_url = database_url or f"sqlite:///{tmp / 'fs.db'}"
    settings = load_settings(
        broker_url=broker_url,
        database_url=database_url,
        data_dir=tmp / "data",
        describer={"kind": "local"},
        sampling={"cache_descriptions": False},
        worker={**limits, "queue": queue},
        scheduler={"allow_private_urls": ["127.0.0.1"]},
    )
    failpoints = tmp / "failpoints"
    failpoints.mkdir(parents=True, exist_ok=True)
    store = SqlResultStore(database_url)
    base = worker_env(settings, failpoints, FRAMESCRIBE_SAMPLING__CACHE_DESCRIPTIONS="false", **(env or {}))
    base.update({f"FRAMESCRIBE_WORKER__{k.upper()}": str(v) for k, v in limits.items()})
    c = Cluster(settings, store, base, failpoints)
    try:
        for i in range(workers):
            extra = (worker_extra or [])[i] if i < len(worker_extra or []) else {}
            w = Worker(f"f{i}-{queue}", {**base, **extra}, tmp / f"worker{i}.log", queue, concurrency)
            w.start()
            c.workers.append(w)
        for w in c.workers:
            w.wait_ready()
        yield c
    finally:
        c.stop()
        store.close()
        _clear_queue(broker_url, queue)


def submit(c: Cluster, clip: Path, arm: tuple[tuple[int, str, str], ...] = (), **options: Any) -> str:
    """Store a job (2 s segments at 2 fps unless overridden), arm failpoints for it, then queue it."""
    from worker.adapters.queue import CeleryEnqueuer

    job, _ = c.store.create_job(str(clip), clip.name, {"segment_seconds": 2, "fps": 2, **options})
    for index, point, action in arm:
        c.arm(job.id, index, point, action)
    CeleryEnqueuer(c.settings).enqueue_job(job.id)
    return job.id


def assert_job_clean(c: Cluster, job_id: str, states: tuple[str, ...] = TERMINAL) -> dict[str, Any]:
    """The fault invariants: a terminal job, one row per planned segment (none lost, none doubled), every
    row terminal (a failed one with a reason), frames complete for done rows, exactly one summary."""
    job = c.store.get_job(job_id)
    assert job.state in states, (job.state, job.error)
    assert job.summary is not None
    rows = c.rows(job_id)
    indexes = [i for i, _, _ in rows]
    assert indexes == list(range(job.segment_count)), rows  # 0 lost, 0 duplicates
    assert job.segment_count > 0
    for index, state, _ in rows:
        assert state in ("done", "failed", "cancelled", "static"), (index, state)
        if state == "failed":
            assert c.store.segment(job_id, index).error, f"segment {index} failed without a reason"
    for index, (stored, planned) in c.frame_counts(job_id).items():
        if c.store.segment_state(job_id, index) == "done":
            assert stored == planned, (index, stored, planned)
    wait_for(lambda: c.summaries(job_id) >= 1, 10, f"the summary log line of job {job_id}")
    assert c.summaries(job_id) == 1
    return {"state": job.state, "segments": len(rows), "attempts": sum(a for _, _, a in rows)}


# -- a private PostgreSQL -----------------------------------------------------------------------
class PgCluster:
    """A throw-away PostgreSQL cluster owned by user postgres on a free port (trust auth, loopback)."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins or os.geteuid() != 0 or shutil.which("runuser") is None:
            pytest.skip("a private PostgreSQL needs /usr/lib/postgresql/*/bin/initdb, root and runuser")
        self.bin = bins[-1].parent
        self.folder = Path(tempfile.mkdtemp(prefix="fs-pg-"))
        shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = ["runuser", "-u", "postgres", "--", str(self.bin / args[0]), *args[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args[:2])} failed: {done.stderr[-2000:]}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.folder / "pg.log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def cleanup(self) -> None:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PgCluster]:
    pg = PgCluster()
    try:
        try:
            pg.init()
            pg.start()
        except (AssertionError, OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot start a private PostgreSQL cluster here: {exc}")
        yield pg
    finally:
        pg.cleanup()


# -- a small disk -------------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` over ``folder`` (needs root / CAP_SYS_ADMIN); skip when impossible."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the disk-full test needs one")
    try:
        yield folder
    finally:
        for _ in range(20):
            if subprocess.run(["umount", str(folder)], capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.5)  # a worker may still hold a file open
        else:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave_bytes: int) -> None:
    """Fill the file system of ``folder`` until about ``leave_bytes`` remain free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with (folder / ".filler").open("wb") as fh:
        fh.write(b"\0" * max(0, free - leave_bytes))


# -- a jumping clock ----------------------------------------------------------------------------
def libfaketime_path() -> Path:
    try:
        import libfaketime  # type: ignore[import-untyped]
    except ImportError:
        pytest.skip("the libfaketime package (dev extra) is not installed")
    so = Path(libfaketime.__file__).parent / "vendor" / "libfaketime" / "src" / "libfaketime.so.1"
    if not so.is_file():
        pytest.skip(f"libfaketime ships no library at {so}")
    return so


def faketime_env(clock_file: Path, offset: str = "+0") -> dict[str, str]:
    """Environment under which a process' wall clock follows ``clock_file`` (re-read on every call);
    CLOCK_MONOTONIC stays real, as with an NTP step or a VM resume."""
    clock_file.write_text(offset + "\n", encoding="utf-8")
    return {
        "LD_PRELOAD": str(libfaketime_path()),
        "FAKETIME_TIMESTAMP_FILE": str(clock_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


# -- /proc ----------------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker_rss_kb(w: Worker) -> int:
    """RSS of a worker's main process plus its pool children."""
    assert w.proc is not None
    return rss_kb(w.proc.pid) + sum(rss_kb(p) for p in children(w.proc.pid))


def _socket_inodes(remote_port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if int(parts[2].rsplit(":", 1)[1], 16) == remote_port and parts[3] == "01":  # ESTABLISHED
                    inodes.add(parts[9])
    return inodes


def connected_to(pids: list[int], port: int) -> list[int]:
    """The processes among ``pids`` with an established TCP connection to 127.0.0.1:``port``."""
    inodes = _socket_inodes(port)
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        found.append(pid)
                        break
    return found


def kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# -- Redis ----------------------------------------------------------------------------------------
def redis_audit(url: str) -> dict[str, Any]:
    """Every key of the DB by kind: those without a TTL (by prefix) and the length of every list."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    no_ttl: dict[str, int] = {}
    names: list[str] = []
    lists: dict[str, int] = {}
    total = 0
    for raw in client.scan_iter(count=500):
        key = raw.decode(errors="replace")
        total += 1
        if client.type(raw) == b"list":
            lists[key] = int(client.llen(raw))
        if client.ttl(raw) == -1:
            prefix = "_kombu" if key.startswith("_kombu.") else key.split(":", 1)[0]
            no_ttl[prefix] = no_ttl.get(prefix, 0) + 1
            names.append(key)
    memory = int(client.info("memory")["used_memory"])
    return {"keys": total, "no_ttl": no_ttl, "no_ttl_keys": sorted(names)[:100], "lists": lists, "used_memory": memory}


# -- figures --------------------------------------------------------------------------------------
def write_figures(name: str, data: dict[str, Any]) -> None:
    """Write ``data`` to $FRAMESCRIBE_FIGURES_DIR/<name>.json (scripts/reliability-report embeds it)."""
    folder = os.environ.get("FRAMESCRIBE_FIGURES_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]
