"""Putting work on the queue: ``CeleryEnqueuer`` (send_task by name over Redis) or ``InlineEnqueuer``.

The API never imports task bodies: it sends ``framescribe.plan_job(job_id)`` and
``framescribe.fire_schedule(schedule_id)`` by name to ``settings.worker.queue``. A broker that does not
answer becomes ``QueueUnavailable`` (HTTP 503) within about a second instead of a hanging request.
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from worker.config import Settings
from worker.errors import FramescribeError

log = logging.getLogger(__name__)

PLAN_JOB = "framescribe.plan_job"
FIRE_SCHEDULE = "framescribe.fire_schedule"
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.0, "interval_step": 0.3, "interval_max": 0.5}


class QueueUnavailable(FramescribeError):
    code = "queue_unavailable"


class Enqueuer(Protocol):
    def enqueue_job(self, job_id: str) -> None: ...

    def fire_schedule(self, schedule_id: str) -> str: ...

    def broker_ok(self) -> bool: ...

    def workers(self, timeout_s: float = 1.0) -> int: ...

    def queue_depth(self) -> int | None: ...

    def close(self) -> None: ...


class CeleryEnqueuer:
    """Sends tasks by name with a producer app built from explicit settings."""

    def __init__(self, settings: Settings) -> None:
        from worker.celery_app import make_app

        self.settings = settings
        self.queue = settings.worker.queue
        self.app = make_app(settings, name="framescribe-api")
        self._redis: Any = None
        self._lock = threading.Lock()

    def _send(self, name: str, args: list[Any], **options: Any) -> str:
        try:
            result = self.app.send_task(
                name, args=args, queue=self.queue, retry=True, retry_policy=PUBLISH_RETRY, **options
            )
        except Exception as exc:  # kombu/redis raise many connection error types; all mean "queue down"
            log.warning("cannot publish %s: %s: %s", name, type(exc).__name__, exc)
            raise QueueUnavailable("the job queue (Redis) is not reachable; try again shortly") from None
        return str(result.id)

    def enqueue_job(self, job_id: str) -> None:
        self._send(PLAN_JOB, [job_id])

    def fire_schedule(self, schedule_id: str) -> str:
        return self._send(FIRE_SCHEDULE, [schedule_id], kwargs={"manual": True}, task_id=uuid.uuid4().hex)

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
            return int(self.redis.llen(self.queue))
        except Exception:
            return None

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
        self.app.close()


class InlineEnqueuer:
    """Runs jobs in this process on one background thread (no broker): for ``framescribe scheduler
    --inline`` and small setups. Schedules only run when asked (``POST /v1/schedules/{id}/run``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="inline-job")

    def enqueue_job(self, job_id: str) -> None:
        self.pool.submit(self._run, job_id)

    def _run(self, job_id: str) -> None:
        from worker import pipeline
        from worker.wiring import build_ports

        try:
            pipeline.run_inline(build_ports(self.settings, check_sources=True), job_id)
        except FramescribeError as exc:
            log.warning("job %s: %s", job_id, exc.message)

    def fire_schedule(self, schedule_id: str) -> str:
        from worker.service_tasks import fire

        token = uuid.uuid4().hex
        self.pool.submit(fire, self.settings, schedule_id, token, self.enqueue_job, True)
        return token

    def broker_ok(self) -> bool:
        return True

    def workers(self, timeout_s: float = 1.0) -> int:
        return 1

    def queue_depth(self) -> int | None:
        return self.pool._work_queue.qsize()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
