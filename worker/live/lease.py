"""A stream is owned by one worker at a time: a Redis lease (SET NX PX) renewed by its owner, which
another worker takes over once it expires (the owner died). Renew and release only touch our own token."""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable

import redis

log = logging.getLogger(__name__)
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class Lease:
    def __init__(self, client: redis.Redis, name: str, ttl_s: float, token: str | None = None) -> None:
        self.client = client
        self.key = f"framescribe:live:lease:{name}"
        self.ttl_ms = max(1000, round(ttl_s * 1000))
        self.token = token or uuid.uuid4().hex

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """False when the lease is no longer ours (expired and taken): the owner must stop at once."""
        try:
            return bool(self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))
        except redis.RedisError:
            return True  # Redis unreachable: keep going until the lease would have expired

    def release(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.client.eval(_RELEASE, 1, self.key, self.token)

    def keep(self, on_lost: Callable[[], None], every: Callable[[], None] | None = None) -> Callable[[], None]:
        """Renew every third of the TTL on a thread until the returned ``stop()``; ``on_lost()`` when the
        lease is gone. ``every()`` runs after each renewal (e.g. making sure a standby exists)."""
        done = threading.Event()

        def run() -> None:
            while not done.wait(self.ttl_ms / 3000):
                if not self.renew():
                    on_lost()
                    return
                if every is not None:
                    try:
                        every()
                    except Exception:  # never let a helper stop the renewals
                        log.exception("lease %s: periodic helper failed", self.key)

        thread = threading.Thread(target=run, name=f"lease-{self.key}", daemon=True)
        thread.start()

        def stop() -> None:
            done.set()
            thread.join(5)
            self.release()

        return stop

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value
