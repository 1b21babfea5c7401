"""One change feed per watched job, shared by every event stream (``GET /v1/jobs/{id}/events``) on it.

A job's feed reads the store once per change notice and hands that snapshot to all its viewers, so N
viewers cost one read per change, not N reads every half second. Notices come from the workers
(Redis pub/sub on ``worker.adapters.queue.changes.CHANNEL``, Celery mode) or from this process (the
inline runner's ``on_event``, and the API's own cancel / retry / delete). A notice that never arrives
only delays: each feed re-reads every ``fallback_s`` anyway. The segment rows are re-read only when
the job's counts moved. A feed ends with its last viewer, or when the job ends or disappears.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from worker.adapters.queue.changes import changed_job
from worker.core.models import Job, SegmentRow
from worker.core.ports import ResultStore
from worker.core.states import TERMINAL_JOB

log = logging.getLogger(__name__)
COALESCE_S = 0.05  # a burst of notices (several segments stored at once) costs one read


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a job looked like at one read: ``job`` None when it was deleted."""

    version: int
    job: Job | None
    counts: dict[str, int]
    rows: tuple[SegmentRow, ...]

    @property
    def final(self) -> bool:
        return self.job is None or self.job.state in TERMINAL_JOB


@dataclass(eq=False)
class _Hub:
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    newer: asyncio.Condition = field(default_factory=asyncio.Condition)
    snapshot: Snapshot | None = None
    viewers: int = 0
    task: asyncio.Task[None] | None = None

    def newer_than(self, version: int) -> bool:
        return self.snapshot is not None and self.snapshot.version > version


class JobFeed:
    """Per-job shared snapshots for event streams. ``reads`` counts store reads (for tests and metrics);
    ``listen`` (optional) runs once, from the first watch, and calls ``notify_here`` for outside notices."""

    def __init__(
        self,
        store: ResultStore,
        fallback_s: float = 5.0,
        listen: Callable[[JobFeed], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.store = store
        self.fallback_s = fallback_s
        self.reads = 0
        self._listen = listen
        self._listener: asyncio.Task[None] | None = None
        self._hubs: dict[str, _Hub] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- notices ---------------------------------------------------------------------------------
    def notify(self, job_id: str) -> None:
        """Job ``job_id`` changed; safe from any thread (the inline runner's threads included)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(self.notify_here, job_id)

    def notify_here(self, job_id: str) -> None:
        """``notify`` on the event loop's own thread."""
        hub = self._hubs.get(job_id)
        if hub is not None:
            hub.changed.set()

    def listen_with(self, listen: Callable[[JobFeed], Coroutine[Any, Any, None]]) -> None:
        """Outside notices: ``listen(feed)`` runs from the first watch until ``close``."""
        self._listen = listen

    @property
    def watched(self) -> int:
        return len(self._hubs)

    @property
    def viewers(self) -> int:
        return sum(h.viewers for h in list(self._hubs.values()))

    # -- viewers ---------------------------------------------------------------------------------
    async def watch(self, job_id: str, heartbeat_s: float) -> AsyncIterator[Snapshot | None]:
        """Snapshots of the job as they change (the first at once); None after ``heartbeat_s`` of quiet.
        Ends after a final snapshot (job ended or deleted)."""
        self._loop = asyncio.get_running_loop()
        if self._listen is not None and (self._listener is None or self._listener.done()):
            self._listener = asyncio.create_task(self._listen(self))
        hub = self._hubs.get(job_id)
        if hub is None:
            hub = self._hubs[job_id] = _Hub()
            hub.task = asyncio.create_task(self._follow(job_id, hub))
        hub.viewers += 1
        seen = 0
        try:
            while True:
                try:
                    async with hub.newer:
                        await asyncio.wait_for(
                            hub.newer.wait_for(functools.partial(hub.newer_than, seen)),
                            heartbeat_s,
                        )
                except TimeoutError:
                    yield None
                    continue
                snap = hub.snapshot
                assert snap is not None
                seen = snap.version
                yield snap
                if snap.final:
                    return
        finally:
            hub.viewers -= 1
            if hub.viewers == 0 and self._hubs.get(job_id) is hub:
                del self._hubs[job_id]
                if hub.task is not None:
                    hub.task.cancel()

    async def close(self) -> None:
        tasks = [h.task for h in self._hubs.values() if h.task is not None]
        if self._listener is not None:
            tasks.append(self._listener)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._hubs.clear()

    # -- the one reader per job ------------------------------------------------------------------
    def _read(self, job_id: str, last: Snapshot | None) -> tuple[Job | None, dict[str, int], tuple[SegmentRow, ...]]:
        self.reads += 1
        try:
            job = self.store.get_job(job_id)
        except Exception:  # deleted (NotFound) or unreadable: the streams end
            return None, {}, ()
        counts = self.store.counts(job_id)
        if last is not None and last.job is not None and counts == last.counts:
            return job, counts, last.rows  # nothing finished or failed since: the rows are unchanged
        return job, counts, tuple(self.store.segment_rows(job_id))

    async def _follow(self, job_id: str, hub: _Hub) -> None:
        version = 0
        while True:
            hub.changed.clear()
            try:
                job, counts, rows = await run_in_threadpool(self._read, job_id, hub.snapshot)
            except Exception as exc:  # the store is down: try again at the fallback pace
                log.warning("event feed of job %s cannot read the store: %s", job_id, exc)
            else:
                version += 1
                async with hub.newer:
                    hub.snapshot = Snapshot(version, job, counts, rows)
                    hub.newer.notify_all()
                if hub.snapshot.final:
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hub.changed.wait(), self.fallback_s)
            await asyncio.sleep(COALESCE_S)


class FeedCollector(Collector):
    """``/metrics``: store reads of the event feeds, jobs watched and streams open."""

    def __init__(self, feed: JobFeed) -> None:
        self.feed = feed

    def collect(self) -> Iterator[Metric]:
        reads = CounterMetricFamily("framescribe_event_feed_reads", "Store reads by the event streams' feeds.")
        reads.add_metric([], self.feed.reads)
        yield reads
        yield GaugeMetricFamily("framescribe_event_feeds", "Jobs with open event streams.", value=self.feed.watched)
        yield GaugeMetricFamily("framescribe_event_streams", "Open event streams.", value=self.feed.viewers)


def feed_events(feed: JobFeed) -> Callable[[str, dict[str, Any]], None]:
    """An ``on_event`` listener (jobs run in this process) that wakes the job's feed on row changes."""

    def on_event(kind: str, data: dict[str, Any]) -> None:
        job_id = changed_job(kind, data)
        if job_id is not None:
            feed.notify(job_id)

    return on_event


async def listen_redis(url: str, channel: str, feed: JobFeed, retry_s: float = 1.0) -> None:
    """Forward the workers' change notices from Redis pub/sub to ``feed``; reconnects for ever (while
    Redis is away the feeds run on their fallback poll)."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    wait = retry_s
    while True:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=5)
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(channel)
                wait = retry_s
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes) and len(data) <= 64:
                        feed.notify_here(data.decode("ascii", "replace"))
        except (RedisError, OSError) as exc:
            log.info("job change notices unavailable (%s); event streams poll every %.0f s", exc, feed.fallback_s)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()
        await asyncio.sleep(wait)
        wait = min(30.0, wait * 2)
