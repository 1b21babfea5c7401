"""``InlineEnqueuer``: work runs in this process on one background thread (no broker).

For ``framescribe scheduler --inline`` and small setups. What a queued item does is given by the
caller (``worker.bootstrap`` passes the job service's functions), so this adapter knows no job logic.
Schedules only run when asked (``POST /v1/schedules/{id}/run``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from worker.errors import FramescribeError, QueueUnavailable

log = logging.getLogger(__name__)


class InlineEnqueuer:
    def __init__(
        self,
        run_job: Callable[[str], Any],
        send_webhook: Callable[[str], Any],
        fire_schedule: Callable[[str, str], Any] | None = None,
    ) -> None:
        self._run_job = run_job
        self._send_webhook = send_webhook
        self._fire = fire_schedule
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="inline-job")
        self.hooks = ThreadPoolExecutor(1, thread_name_prefix="inline-webhook")  # backoff never delays jobs
        self.closed = False

    def _submit(self, what: str, fn: Callable[..., Any], *args: Any, pool: ThreadPoolExecutor | None = None) -> None:
        if self.closed:
            raise QueueUnavailable("the in-process queue is shut down")

        def run() -> None:
            try:
                fn(*args)
            except FramescribeError as exc:
                log.warning("%s %s: %s", what, args[0], exc.message)
            except Exception:  # a thread must not die silently: log it with the traceback
                log.exception("%s %s failed", what, args[0])

        (pool or self.pool).submit(run)

    def enqueue_job(self, job_id: str) -> None:
        self._submit("job", self._run_job, job_id)

    def enqueue_segment(self, job_id: str, index: int) -> None:
        self._submit("job", self._run_job, job_id)  # the runner does every pending segment of the job

    def send_webhook(self, job_id: str) -> None:
        self._submit("webhook of job", self._send_webhook, job_id, pool=self.hooks)

    def fire_schedule(self, schedule_id: str) -> str:
        if self._fire is None:
            raise QueueUnavailable("schedules cannot run in this process")
        token = uuid.uuid4().hex
        self._submit("schedule", self._fire, schedule_id, token)
        return token

    def broker_ok(self) -> bool:
        return not self.closed

    def workers(self, timeout_s: float = 1.0) -> int:
        return 0 if self.closed else 1

    def queue_depth(self) -> int | None:
        return self.pool._work_queue.qsize()

    def drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for queued work (jobs, webhook attempts), then stop taking more."""
        import time

        deadline = time.monotonic() + timeout_s
        for pool in (self.pool, self.hooks):
            probe = pool.submit(lambda: None)  # one worker thread: done once everything before it is
            try:
                probe.result(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("in-process queue: work still running after %.0f s; not waiting longer", timeout_s)
        self.close()

    def close(self) -> None:
        self.closed = True
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.hooks.shutdown(wait=False, cancel_futures=True)
