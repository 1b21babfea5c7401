"""A DashScope call limit shared by every worker through Redis: calls in flight, requests per second,
and a common "blocked until" that a 429 sets so all workers back off together.

Use (in a describer)::

    with limiter.acquire():              # waits for a slot; raises DescriberTransient after timeout_s
        response = call_dashscope(...)
    if response.status_code == 429:
        limiter.penalise(retry_after_s or backoff_s)

One Lua script decides atomically on Redis' own clock (``TIME``), so machines with skewed clocks agree.
Requests are spaced at least ``1 / rate_per_s`` apart (GCRA without burst), which keeps any one-second
window at or under the limit. A slot is leased: a worker that dies holding one frees it after ``lease_s``.
The last 1000 grants and back-offs are kept (``recent_grants``, ``recent_penalties``) so the observed
rate can be compared with the limit.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import redis

from worker.config import Settings
from worker.errors import DescriberTransient

log = logging.getLogger(__name__)

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_conc = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local blocked = tonumber(redis.call('GET', KEYS[3]) or '0')
if blocked > now then return {0, string.format('%.0f', blocked - now), string.format('%.0f', now)} end
if max_conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= max_conc then
    return {0, '-1', string.format('%.0f', now)}
  end
end
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tat > now then return {0, string.format('%.0f', tat - now), string.format('%.0f', now)} end
  redis.call('SET', KEYS[2], string.format('%.0f', now + interval), 'PX', math.ceil(interval / 1000) + 1000)
end
if max_conc > 0 then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000) + 1000)
end
redis.call('LPUSH', KEYS[4], string.format('%.0f', now))
redis.call('LTRIM', KEYS[4], 0, 999)
redis.call('PEXPIRE', KEYS[4], 3600000)
return {1, '0', string.format('%.0f', now)}
"""

_PENALISE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur > untl then untl = cur end
redis.call('SET', KEYS[1], string.format('%.0f', untl), 'PX', math.ceil((untl - now) / 1000) + 1)
redis.call('LPUSH', KEYS[2], string.format('%.0f:%.0f', now, untl))
redis.call('LTRIM', KEYS[2], 0, 999)
redis.call('PEXPIRE', KEYS[2], 3600000)
return string.format('%.0f', untl)
"""


class Permit(Protocol):
    """One granted call; leaving the ``with`` block (or ``release()``) frees its slot."""

    granted_at: float

    def __enter__(self) -> Permit: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def release(self) -> None: ...


class RateLimiter(Protocol):
    """What a describer needs: a slot before each call, and a shared back-off after a 429."""

    def acquire(self, timeout_s: float | None = None) -> Permit: ...

    def release(self, permit: Permit) -> None: ...

    def penalise(self, seconds: float) -> float | None: ...


@dataclass
class _Permit:
    limiter: RedisRateLimiter | None
    token: str
    granted_at: float  # Redis server time (epoch seconds) when the slot was granted
    released: bool = field(default=False)

    def __enter__(self) -> _Permit:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def release(self) -> None:
        if not self.released:
            self.released = True
            if self.limiter is not None:
                self.limiter._free(self.token)


class NullRateLimiter:
    """No shared limit (embedded runs without Redis)."""

    def acquire(self, timeout_s: float | None = None) -> Permit:
        return _Permit(None, "", time.time())

    def release(self, permit: Permit) -> None:
        permit.release()

    def penalise(self, seconds: float) -> float | None:
        return None


class RedisRateLimiter:
    """Concurrency and requests/second limits kept in Redis, shared by every process that uses ``key``.

    Args:
        client: a redis-py client (its database holds the keys ``<key>:*``).
        key: the limited resource, e.g. ``framescribe:rl:dashscope:<account>``.
        max_concurrency: calls in flight across all workers (0 = unlimited).
        rate_per_s: calls started per second across all workers (0 = unlimited).
        lease_s: a slot whose holder vanished is freed after this long (>= the call timeout).
        timeout_s: default wait in ``acquire`` before giving up with DescriberTransient.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        max_concurrency: int = 0,
        rate_per_s: float = 0.0,
        lease_s: float = 300.0,
        timeout_s: float = 120.0,
    ) -> None:
        self.client = client
        self.key = key
        self.max_concurrency = max_concurrency
        self.rate_per_s = rate_per_s
        self.lease_s = lease_s
        self.timeout_s = timeout_s
        self._acquire: Any = client.register_script(_ACQUIRE)
        self._penalise: Any = client.register_script(_PENALISE)
        self._keys = [f"{key}:holders", f"{key}:tat", f"{key}:blocked", f"{key}:grants", f"{key}:penalties"]

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis | None = None) -> RedisRateLimiter:
        """The DashScope limiter for this account, in the broker's Redis."""
        ds = settings.dashscope
        account = hashlib.sha256((settings.dashscope_api_key or "").encode()).hexdigest()[:12]
        return cls(
            client or redis.Redis.from_url(settings.broker_url, socket_timeout=10, socket_connect_timeout=10),
            f"framescribe:rl:dashscope:{account}",
            max_concurrency=ds.max_in_flight,
            rate_per_s=ds.rate_limit_per_s,
            lease_s=ds.timeout_s * 1.5 + 10,
            timeout_s=max(60.0, ds.retry_budget_s),
        )

    def acquire(self, timeout_s: float | None = None) -> Permit:
        """Wait for a slot. Raises DescriberTransient when none came within ``timeout_s``."""
        if self.max_concurrency <= 0 and self.rate_per_s <= 0 and not self._blocked():
            return _Permit(None, "", time.time())
        token = uuid.uuid4().hex
        interval_us = round(1_000_000 / self.rate_per_s) if self.rate_per_s > 0 else 0
        lease_us = round(self.lease_s * 1_000_000)
        limit = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        while True:
            try:
                ok, wait_us, now_us = self._acquire(
                    keys=self._keys[:4], args=[token, self.max_concurrency, interval_us, lease_us]
                )
            except redis.RedisError as exc:
                raise DescriberTransient(f"the shared DashScope rate limiter (Redis) is unavailable: {exc}") from exc
            if int(ok) == 1:
                return _Permit(self, token, int(now_us) / 1_000_000)
            wait = 0.02 + random.random() * 0.05 if int(wait_us) < 0 else int(wait_us) / 1_000_000
            wait += random.random() * 0.01  # de-synchronise waiters a little; spacing is enforced in Redis
            if time.monotonic() + wait > deadline:
                raise DescriberTransient(
                    f"waited {limit:.0f} s for a DashScope call slot (limit: {self.max_concurrency or '∞'} in flight, "
                    f"{self.rate_per_s or '∞'}/s); the account is saturated or backing off after 429s",
                    retry_after_s=wait,
                )
            time.sleep(wait)

    def release(self, permit: Permit) -> None:
        permit.release()

    def _free(self, token: str) -> None:
        try:
            self.client.zrem(self._keys[0], token)
        except redis.RedisError as exc:  # the lease frees it later
            log.warning("could not release a DashScope slot in Redis (%s); it expires in %.0f s", exc, self.lease_s)

    def penalise(self, seconds: float) -> float | None:
        """Block every worker's calls for ``seconds`` from now (never shortens a longer block).

        Returns when the block ends (Redis time, epoch seconds), or None if Redis could not be told."""
        if seconds <= 0:
            return None
        try:
            until = self._penalise(keys=[self._keys[2], self._keys[4]], args=[round(seconds * 1_000_000)])
        except redis.RedisError as exc:
            log.warning("could not share a DashScope back-off through Redis: %s", exc)
            return None
        return int(until) / 1_000_000

    def recent_grants(self) -> list[float]:
        """When the last (up to 1000) calls were allowed to start, oldest first (Redis time, epoch s)."""
        return sorted(int(v) / 1_000_000 for v in self.client.lrange(self._keys[3], 0, -1))

    def recent_penalties(self) -> list[tuple[float, float]]:
        """The last (up to 1000) back-offs as (set at, blocked until), oldest first (Redis time, epoch s)."""
        raw: list[Any] = list(self.client.lrange(self._keys[4], 0, -1))
        spans = ((v.decode() if isinstance(v, bytes) else str(v)).split(":") for v in raw)
        return sorted((int(a) / 1_000_000, int(b) / 1_000_000) for a, b in spans)

    def reset(self) -> None:
        """Forget every slot, spacing, back-off and record of this limiter (its keys in Redis)."""
        self.client.delete(*self._keys)

    def blocked_for(self) -> float:
        """Seconds until calls may resume after a penalty (0 when not blocked)."""
        raw = self.client.get(self._keys[2])
        if raw is None:
            return 0.0
        sec, usec = self.client.time()
        return max(0.0, (int(raw) - (int(sec) * 1_000_000 + int(usec))) / 1_000_000)

    def _blocked(self) -> bool:
        try:
            return self.client.exists(self._keys[2]) > 0
        except redis.RedisError:
            return False
