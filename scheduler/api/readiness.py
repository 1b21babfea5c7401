"""``/readyz`` without a thundering herd: one probe at a time, a deadline, and a short-lived cache.

The probe (database ping, broker ping, Celery ``control.ping``) runs on its own single thread, never on
the shared worker pool, so however many clients ask, at most one probe is in flight and no other
route waits behind it. A probe past its deadline answers "not ready" (``timeout``) while it finishes
in the background; the next request after the cache expires starts a new one only once it is done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class Readiness:
    def __init__(self, cache_s: float, timeout_s: float) -> None:
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz")
        self._inflight: asyncio.Future[dict[str, Any]] | None = None
        self._last: tuple[float, dict[str, Any]] | None = None
        self.probes = 0  # how many probes were started (tests read it)

    async def checks(self, probe: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.cache_s:
            return self._last[1]
        if self._inflight is None or self._inflight.done():
            self.probes += 1
            self._inflight = asyncio.wrap_future(self._pool.submit(probe))
            self._inflight.add_done_callback(self._remember)
        try:
            return await asyncio.wait_for(asyncio.shield(self._inflight), timeout=self.timeout_s)
        except TimeoutError:
            answer = {"store": False, "broker": False, "workers": 0, "timeout": True}
            self._last = (time.monotonic(), answer)  # the herd behind this one answers at once
            return answer
        except Exception:  # a probe that raised means "not ready"
            return {"store": False, "broker": False, "workers": 0}

    def _remember(self, fut: asyncio.Future[dict[str, Any]]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._last = (time.monotonic(), fut.result())
