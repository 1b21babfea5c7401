"""Bounded retries for model calls, and the process-wide limit on calls in flight.

Only DescriberTransient is retried: exponential backoff with jitter, never sooner than a
``Retry-After`` the service sent, at most ``max_attempts`` attempts and ``budget_s`` seconds in all.
Nothing is retried forever. The call gate (one semaphore per process) is held only while a request
is on the wire, not while waiting to retry.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from worker.config import DashScopeSettings
from worker.errors import DescriberTransient

log = logging.getLogger(__name__)
T = TypeVar("T")
_sleep = time.sleep  # module-level so tests can watch the waits without waiting


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 1.0
    max_s: float = 30.0
    budget_s: float = 300.0

    @classmethod
    def of(cls, s: DashScopeSettings) -> RetryPolicy:
        return cls(s.max_attempts, s.backoff_base_s, s.backoff_max_s, s.retry_budget_s)

    def delay(self, attempt: int, retry_after_s: float | None, rand: Callable[[], float] = random.random) -> float:
        """Wait before attempt ``attempt + 1``: "equal jitter" backoff, at least ``Retry-After``."""
        cap = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        wait = cap / 2 + rand() * cap / 2
        return float(max(wait, retry_after_s)) if retry_after_s is not None else float(wait)


@functools.cache
def call_gate(limit: int) -> threading.BoundedSemaphore:
    """The process-wide semaphore for ``limit`` calls in flight (shared by every describer built here)."""
    return threading.BoundedSemaphore(max(1, limit))


def with_retries(
    attempt_fn: Callable[[int], T],
    policy: RetryPolicy,
    *,
    what: str,
    gate: threading.BoundedSemaphore | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> tuple[T, int]:
    """Call ``attempt_fn(attempt)`` until it succeeds; returns its result and the attempts made.

    Raises the last DescriberTransient (its message says how often and how long it was tried)
    when attempts or the time budget run out; any other error at once."""
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            if gate is None:
                return attempt_fn(attempt), attempt
            with gate:
                return attempt_fn(attempt), attempt
        except DescriberTransient as exc:
            elapsed = clock() - started
            if attempt >= policy.max_attempts:
                raise DescriberTransient(
                    f"{exc.message}; gave up after {attempt} attempts in {elapsed:.1f}s",
                    retry_after_s=exc.retry_after_s,
                ) from exc
            wait = policy.delay(attempt, exc.retry_after_s, rand)
            if elapsed + wait > policy.budget_s:
                raise DescriberTransient(
                    f"{exc.message}; gave up after {attempt} attempts: the next wait ({wait:.1f}s) would pass the "
                    f"retry budget of {policy.budget_s:g}s",
                    retry_after_s=exc.retry_after_s,
                ) from exc
            log.warning("%s: %s; attempt %d of %d in %.2fs", what, exc.message, attempt + 1, policy.max_attempts, wait)
            (sleep or _sleep)(wait)
