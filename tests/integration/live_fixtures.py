"""Helpers of the live-camera tests: settings, an in-process watcher, what was stored, timeline checks."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tests.live_servers import Subscriber, start_mosquitto
from worker.adapters.stores.schema import SegmentDbRow
from worker.bootstrap import build_ports
from worker.config import Settings, load_settings
from worker.live.options import WatchOptions
from worker.live.source import check_live
from worker.live.store import LiveStore
from worker.live.watcher import Counters, Watcher


def live_settings(tmp: Path, database_url: str | None = None, **live: Any) -> Settings:
    return load_settings(
        data_dir=tmp / "data",
        database_url=database_url or f"sqlite:///{tmp / 'live.db'}",
        describer={"kind": "local"},
        live={
            "allow_cameras": ["127.0.0.1"],
            "open_timeout_s": 5,
            "read_timeout_s": 2,
            "backoff_initial_s": 0.3,
            "backoff_max_s": 2,
            **live,
        },
    )


@dataclass
class Run:
    watcher: Watcher
    thread: threading.Thread
    result: list[Counters]

    def join(self, timeout: float) -> Counters:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the watcher did not stop by its deadline"
        return self.result[0]


def start_watch(settings: Settings, url: str, name: str, seconds: float, **options: Any) -> Run:
    ports = build_ports(settings)
    opts = WatchOptions.parse({"segment_seconds": 2, "fps": 2, **options})
    source = check_live(url, settings.live.allow_cameras)
    watcher = Watcher(ports, name, source, opts)
    result: list[Counters] = []
    thread = threading.Thread(target=lambda: result.append(watcher.run(seconds)), daemon=True)
    thread.start()
    return Run(watcher, thread, result)


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    """The first truthy value of ``predicate()`` within ``timeout`` seconds (else an assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def camera_name() -> str:
    return f"cam-{uuid.uuid4().hex[:8]}"


def subscriber(camera: str) -> Subscriber:
    start_mosquitto()
    return Subscriber(camera).start()


def stored(settings: Settings, job_id: str) -> tuple[list[Any], list[Any], list[tuple[int, str]]]:
    """(live segment rows, gaps, (index, state) of the job's segment rows) of a stream's job."""
    live = LiveStore(build_ports(settings).store)
    with live.store.session() as s:
        q = select(SegmentDbRow.index, SegmentDbRow.state).where(SegmentDbRow.job_id == job_id)
        rows = [(int(i), str(st)) for i, st in s.execute(q.order_by(SegmentDbRow.index)).all()]
    return list(live.segments(job_id)), live.gaps(job_id), rows


def assert_timeline(segments: list[Any], gaps: list[Any]) -> None:
    """Monotonic, non-overlapping UTC spans (pre-event frames aside), none over a recorded gap."""
    for a, b in itertools.pairwise(segments):
        assert b.segment_index == a.segment_index + 1
        assert b.utc_start_ms + b.pre_event_ms >= a.utc_end_ms, (a.__dict__, b.__dict__)
    for g in gaps:
        assert g.utc_end_ms > g.utc_start_ms
        for s in segments:
            assert s.utc_end_ms <= g.utc_start_ms + 1 or s.utc_start_ms + s.pre_event_ms >= g.utc_end_ms - 1, (
                f"segment {s.segment_index} overlaps gap {g.reason}"
            )
