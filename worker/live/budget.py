"""Model calls per hour and per UTC day shared by every camera on every machine (Redis counters).

A call is reserved before it is made (INCR on both windows in one script; refused and undone when a cap
would be passed), so concurrent cameras can never exceed a cap together. The windows follow Redis's clock
(``TIME``), not the worker's: workers whose clocks disagree still count into the same hour and day.
"""

from __future__ import annotations

import redis

_RESERVE = """
local h = redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], 7200)
local d = redis.call('INCR', KEYS[2]); redis.call('EXPIRE', KEYS[2], 172800)
local hc, dc = tonumber(ARGV[1]), tonumber(ARGV[2])
if (hc > 0 and h > hc) or (dc > 0 and d > dc) then
  redis.call('DECR', KEYS[1]); redis.call('DECR', KEYS[2]); return 0
end
return 1
"""


class CallBudget:
    def __init__(self, url: str, per_hour: int, per_day: int, prefix: str = "framescribe:live:calls") -> None:
        self.per_hour = per_hour
        self.per_day = per_day
        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_timeout=5) if (per_hour or per_day) else None

    def _now(self) -> float:
        """Redis's clock: the one every worker shares."""
        assert self.client is not None
        seconds, micros = self.client.time()
        return float(seconds) + micros / 1e6

    def _keys(self, at: float) -> list[str]:
        hour = int(at // 3600)
        return [f"{self.prefix}:h:{hour}", f"{self.prefix}:d:{hour // 24}"]

    def reserve(self, at: float | None = None) -> str | None:
        """None when one more call fits; else why not (the segment is stored as failed, no call made)."""
        if self.client is None:
            return None
        try:
            ok = self.client.eval(_RESERVE, 2, *self._keys(self._now() if at is None else at), self.per_hour,
                                  self.per_day)  # fmt: skip
        except redis.RedisError as exc:
            return f"call budget unavailable (Redis: {exc.__class__.__name__}); no call made"
        if ok:
            return None
        return (
            f"live call budget reached ({self.per_hour or '-'} per hour, {self.per_day or '-'} per day); no call made"
        )

    def used(self, at: float | None = None) -> tuple[int, int]:
        if self.client is None:
            return 0, 0
        values = self.client.mget(self._keys(self._now() if at is None else at))
        return int(values[0] or 0), int(values[1] or 0)
