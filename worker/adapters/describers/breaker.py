"""A circuit breaker for DashScope: after N consecutive transient failures, stop calling for a while.

Failures are counted per request that failed for the service's sake (5xx, a timeout, a reset, a failed
getPolicy/upload); a 429 or a refused request is not an outage and a success closes the circuit. While
open, ``check`` raises DescriberUnavailable at once, without a request: the pipeline stops the job
``partial`` and ``framescribe retry JOB`` resumes it. In one process the state is shared by every job
and thread; under Celery it is also shared by every worker through Redis (``use_redis``), so an outage
costs about N requests in all, not N per worker. The shared state is per account and endpoint (``scope``):
another account, or another region's endpoint, has its own. After ``cooldown_s`` calls are let through again
(one per caller in flight); the first failure re-opens the circuit at once, a success closes it.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from worker.errors import DescriberUnavailable

log = logging.getLogger(__name__)
KEY = "framescribe:dashscope:breaker"


class Breaker:
    def __init__(self, failures: int = 5, cooldown_s: float = 120.0, scope: str = "") -> None:
        self.failures = max(1, failures)
        self.key = f"{KEY}:{scope}" if scope else KEY  # the keys <key>:count, :since and :open in Redis
        self.cooldown_s = cooldown_s
        self._lock = threading.Lock()
        self._count = 0
        self._open_until = 0.0
        self._since: str | None = None  # UTC time of the first failure of the current run
        self._last = ""
        self._redis: Any = None

    def use_redis(self, client: Any) -> None:
        """Share the state with every worker through ``client`` (a ``redis.Redis``)."""
        self._redis = client

    def check(self, job_id: str) -> None:
        """Raise DescriberUnavailable if the circuit is open (here, or in another worker)."""
        with self._lock:
            since = self._since if time.monotonic() < self._open_until else None
            last = self._last
        if since is None and self._redis is not None:
            try:
                raw = self._redis.get(f"{self.key}:open")
            except Exception as exc:  # Redis down: the local state still protects
                log.debug("breaker: Redis unavailable (%s)", exc)
                raw = None
            if raw:
                since, _, last = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition("|")
        if since is not None:
            raise DescriberUnavailable(
                f"{DescriberUnavailable.PREFIX} {since} ({self.failures} consecutive failures; last: {last}); "
                f"`framescribe retry {job_id}` resumes"
            )

    def failure(self, why: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        with self._lock:
            self._count += 1
            if self._count == 1 or self._since is None:
                self._since = now
            self._last = why[:300]
            count, since = self._count, self._since
            if count >= self.failures:
                if time.monotonic() >= self._open_until:
                    log.warning("DashScope: %d consecutive failures since %s; pausing calls for %gs (last: %s)",
                                count, since, self.cooldown_s, why)  # fmt: skip
                self._open_until = time.monotonic() + self.cooldown_s
        if self._redis is not None:
            try:
                shared = int(self._redis.incr(f"{self.key}:count"))
                self._redis.expire(f"{self.key}:count", int(self.cooldown_s * 10) + 60)
                if shared == 1:
                    self._redis.set(f"{self.key}:since", now, ex=int(self.cooldown_s * 10) + 60)
                if shared >= self.failures:
                    first = self._redis.get(f"{self.key}:since") or now.encode()
                    first = first.decode() if isinstance(first, bytes) else str(first)
                    self._redis.set(f"{self.key}:open", f"{first}|{why[:300]}", ex=max(1, round(self.cooldown_s)))
            except Exception as exc:
                log.debug("breaker: Redis unavailable (%s)", exc)

    def success(self) -> None:
        with self._lock:
            self._count = 0
            self._since = None
            self._open_until = 0.0
        if self._redis is not None:
            try:
                self._redis.delete(f"{self.key}:count", f"{self.key}:since", f"{self.key}:open")
            except Exception as exc:
                log.debug("breaker: Redis unavailable (%s)", exc)
