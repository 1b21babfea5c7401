"""``CeleryEnqueuer``: sends tasks by name (``worker.celery_app``) to one queue; never imports task bodies.

A broker that does not answer becomes ``QueueUnavailable`` within about a second (``PUBLISH_RETRY``)
instead of a hanging caller. The REST API, the CLI, the Celery tasks and the reaper all publish here.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from celery import Celery

from worker.adapters.queue.broker_scan import NORMAL, list_keys
from worker.celery_app import FIRE_SCHEDULE, PLAN_JOB, PUBLISH_RETRY, RUN_SEGMENT, SEND_WEBHOOK, make_app
from worker.config import Settings
from worker.errors import QueueUnavailable

log = logging.getLogger(__name__)

_producers: dict[tuple[str, str], Celery] = {}
_producers_lock = threading.Lock()


def producer(settings: Settings, name: str = "framescribe-producer") -> Celery:
    """A Celery app that publishes with ``settings`` (one per broker URL, name and process)."""
    key = (settings.broker_url, name)
    with _producers_lock:
        if key not in _producers:
            _producers[key] = make_app(settings, name=name)
        return _producers[key]


class CeleryEnqueuer:
    """Publishes to ``queue`` (default ``settings.worker.queue``) with ``app`` (default: a producer app
    built from ``settings``; a worker passes its own app)."""

    def __init__(self, settings: Settings, *, app: Celery | None = None, queue: str | None = None,
                 name: str = "framescribe-producer") -> None:  # fmt: skip
        self.settings = settings
        self.queue = queue or settings.worker.queue
        self.app = app or producer(settings, name)
        self._own_app = False
        self._redis: Any = None
        self._lock = threading.Lock()

    @classmethod
    def private(cls, settings: Settings, name: str = "framescribe-api") -> CeleryEnqueuer:
        """An enqueuer with its own producer app, closed by ``close()`` (a long-lived service)."""
        enq = cls(settings, app=make_app(settings, name=name))
        enq._own_app = True
        return enq

    def send(self, task: str, args: list[Any], **options: Any) -> str:
        """Publish ``task``; new work goes to the NORMAL priority list, ``priority=URGENT`` (retried and
        re-queued work) to the list every worker consumes first."""
        options.setdefault("priority", NORMAL)
        try:
            result = self.app.send_task(
                task, args=args, queue=self.queue, retry=True, retry_policy=PUBLISH_RETRY, **options
            )
        except Exception as exc:  # kombu/redis raise many connection error types; all mean "queue down"
            log.warning("cannot publish %s: %s: %s", task, type(exc).__name__, exc)
            where = self.settings.broker_url.split("@")[-1]
            raise QueueUnavailable(f"the job queue (Redis at {where}) is not reachable; try again shortly") from None
        return str(result.id)

    def enqueue_job(self, job_id: str) -> None:
        self.send(PLAN_JOB, [job_id])

    def enqueue_segment(self, job_id: str, index: int) -> None:
        self.send(RUN_SEGMENT, [job_id, index])

    def send_webhook(self, job_id: str) -> None:
        self.send(SEND_WEBHOOK, [job_id])

    def fire_schedule(self, schedule_id: str) -> str:
        return self.send(FIRE_SCHEDULE, [schedule_id], kwargs={"manual": True}, task_id=uuid.uuid4().hex)

    @property
    def redis(self) -> Any:
        with self._lock:
            if self._redis is None:
                import redis

                self._redis = redis.Redis.from_url(self.settings.broker_url, socket_connect_timeout=2, socket_timeout=3)
            return self._redis

    def broker_ok(self) -> bool:
        try:
            return bool(self.redis.ping())
        except Exception as exc:
            log.warning("broker ping failed: %s", exc)
            return False

    def workers(self, timeout_s: float = 1.0) -> int:
        """How many workers answered a ping within ``timeout_s``."""
        try:
            replies = self.app.control.ping(timeout=timeout_s)
        except Exception as exc:
            log.warning("worker ping failed: %s", exc)
            return 0
        return len(replies or [])

    def queue_depth(self) -> int | None:
        try:
            return sum(int(self.redis.llen(name)) for name in list_keys(self.queue))
        except Exception:
            return None

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
        if self._own_app:
            self.app.close()
