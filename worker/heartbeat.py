"""Worker heartbeats and queue consumption in the broker's Redis, readable by any client in a millisecond.

Each worker's main process writes ``framescribe:worker:<hostname>`` (JSON: hostname, pid, queues, ts)
every ``HEARTBEAT_S`` with a TTL of ``3 * HEARTBEAT_S``; each task start writes
``framescribe:consumed:<queue>`` (the UTC time). ``submit``, ``status --follow``, ``doctor`` and
``/metrics`` read them: no live heartbeat for the job queue means no worker is running.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from celery import bootsteps

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
WORKER_KEY = "framescribe:worker:"
CONSUMED_KEY = "framescribe:consumed:"
NO_WORKER = "no worker is running: start one with `framescribe worker`"


@dataclass(frozen=True)
class Beat:
    hostname: str
    pid: int
    queues: tuple[str, ...]
    ts: float

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.ts)


def redis_client(broker_url: str) -> Any:
    import redis

    return redis.Redis.from_url(broker_url, socket_connect_timeout=2, socket_timeout=2)


def beats(client: Any, *, limit: int = 1000) -> list[Beat]:
    """Live workers (their heartbeat key has not expired), at most ``limit``."""
    found: list[Beat] = []
    for key in client.scan_iter(match=WORKER_KEY + "*", count=200):
        raw = client.get(key)
        if raw is None:
            continue
        try:
            doc = json.loads(raw)
            found.append(Beat(str(doc["hostname"]), int(doc["pid"]), tuple(doc["queues"]), float(doc["ts"])))
        except (ValueError, KeyError, TypeError):
            continue
        if len(found) >= limit:
            break
    return found


def last_consumed(client: Any, queue: str) -> float | None:
    raw = client.get(CONSUMED_KEY + queue)
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def no_worker_warning(client: Any, queue: str) -> str | None:
    """The warning to show when no live worker consumes ``queue``; None when one does."""
    live = beats(client)
    if any(queue in b.queues for b in live):
        return None
    if live:
        others = sorted({q for b in live for q in b.queues})
        return (
            f"no worker consumes queue '{queue}' (running workers consume: {', '.join(others)}): "
            f"start one with `framescribe worker --queues {queue}`"
        )
    return NO_WORKER


def warn_if_no_worker(broker_url: str, queue: str) -> str | None:
    """``no_worker_warning`` against the broker; a broker that does not answer is said as such."""
    try:
        client = redis_client(broker_url)
        try:
            return no_worker_warning(client, queue)
        finally:
            client.close()
    except Exception as exc:
        return f"cannot see the workers: the broker does not answer ({type(exc).__name__}): start Redis"


class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """Writes this worker's heartbeat key every HEARTBEAT_S from the worker's main process."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Timer"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None
        self.client: Any = None
        self.hostname = str(getattr(parent, "hostname", None) or socket.gethostname())

    def _queues(self, parent: Any) -> list[str]:
        try:
            return sorted(parent.app.amqp.queues.consume_from)
        except Exception:
            return [parent.app.conf.task_default_queue]

    def beat(self, parent: Any) -> None:
        doc = {"hostname": self.hostname, "pid": os.getpid(), "queues": self._queues(parent), "ts": time.time()}
        try:
            if self.client is None:
                self.client = redis_client(parent.app.conf.broker_url)
            self.client.set(WORKER_KEY + self.hostname, json.dumps(doc), ex=int(3 * HEARTBEAT_S))
        except Exception as exc:  # the broker is down: Celery itself reports that
            log.debug("heartbeat not written: %s", exc)
            self.client = None

    def start(self, parent: Any) -> None:
        self.beat(parent)
        self.tref = parent.timer.call_repeatedly(HEARTBEAT_S, self.beat, (parent,), priority=10)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
        try:
            if self.client is not None:
                self.client.delete(WORKER_KEY + self.hostname)
        except Exception as exc:
            log.debug("heartbeat not removed: %s", exc)


_consumer: dict[str, Any] = {}


def record_consumed(sender: Any = None, task: Any = None, **_: Any) -> None:
    """task_prerun: note that a worker took a task from its queue (one SET per task)."""
    task = task or sender
    try:
        info = getattr(task.request, "delivery_info", None) or {}
        queue = info.get("routing_key") or task.app.conf.task_default_queue
        client = _consumer.get("client")
        if client is None:
            client = _consumer["client"] = redis_client(task.app.conf.broker_url)
        client.set(CONSUMED_KEY + str(queue), repr(time.time()), ex=7 * 86400)
    except Exception as exc:
        log.debug("consumption not recorded: %s", exc)
        _consumer.pop("client", None)


def install(app: Any) -> None:
    """Register the heartbeat step and the consumption signal on the Celery app."""
    from celery.signals import task_prerun

    app.steps["worker"].add(Heartbeat)
    task_prerun.connect(record_consumed, weak=False)


def warn_no_worker(settings: Any, queue: str | None = None) -> None:
    """``submit``: one stderr line when no live worker consumes the job's queue (the job waits)."""
    import sys

    warning = warn_if_no_worker(settings.broker_url, queue or settings.worker.queue)
    if warning:
        sys.stderr.write(f"framescribe: warning: {warning}\n")


class IdleWatch:
    """``status --follow``: after ``warn_after_s`` without progress on a live job, say once why when no
    worker consumes its queue (again only after the job moved and stalled anew)."""

    def __init__(self, settings: Any, warn_after_s: float) -> None:
        self.settings = settings
        self.warn_after_s = warn_after_s
        self.since = time.monotonic()
        self.warned = False

    def progressed(self) -> None:
        self.since = time.monotonic()
        self.warned = False

    def check(self, state: str) -> None:
        if self.warned or state not in ("queued", "running"):
            return
        if time.monotonic() - self.since < self.warn_after_s:
            return
        self.warned = True
        client: Any = None
        try:
            client = redis_client(self.settings.broker_url)
            queue = self.settings.worker.queue
            warning = no_worker_warning(client, queue)
            if warning is None:
                return
            seen = last_consumed(client, queue)
            ago = f"the last task was taken {time.time() - seen:.0f} s ago" if seen else "none has taken a task yet"
            warning = f"no worker has consumed from queue '{queue}' for {self.warn_after_s:g} s ({ago}); {warning}"
        except Exception as exc:
            warning = f"cannot see the workers: the broker does not answer ({type(exc).__name__}): start Redis"
        finally:
            if client is not None:
                client.close()
        import sys

        sys.stderr.write(f"framescribe: warning: {warning}\n")
