"""``/readyz`` without a thundering herd: one probe at a time, a deadline, and a short-lived cache.

The probe (database ping, broker ping, Celery ``control.ping``) runs on its own daemon thread, never on
the shared worker pool, so however many clients ask, at most one probe is in flight and no other
route waits behind it. A probe past its deadline answers "not ready" (``timeout``) while it finishes
in the background; the next request after the cache expires starts a new one only once it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any


class Readiness:
    def __init__(self, cache_s: float, timeout_s: float) -> None:
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._inflight: asyncio.Future[dict[str, Any]] | None = None
        self._last: tuple[float, dict[str, Any]] | None = None
        self.probes = 0  # how many probes were started (tests read it)

    async def checks(self, probe: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.cache_s:
            return self._last[1]
        if self._inflight is None or self._inflight.done():
            self.probes += 1
            self._inflight = self._start(probe)
            self._inflight.add_done_callback(self._remember)
        try:
            return await asyncio.wait_for(asyncio.shield(self._inflight), timeout=self.timeout_s)
        except TimeoutError:
            answer = {"store": False, "broker": False, "workers": 0, "timeout": True}
            self._last = (time.monotonic(), answer)  # the herd behind this one answers at once
            return answer
        except Exception:  # a probe that raised means "not ready"
            return {"store": False, "broker": False, "workers": 0}

    @staticmethod
    def _start(probe: Callable[[], dict[str, Any]]) -> asyncio.Future[dict[str, Any]]:
        """Run ``probe`` on a daemon thread (a hung broker call never blocks shutdown)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()

        def settle(result: dict[str, Any] | None, error: BaseException | None) -> None:
            if fut.done():
                return
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result or {})

        def run() -> None:
            result: dict[str, Any] | None = None
            error: BaseException | None = None
            try:
                result = probe()
            except Exception as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=run, name="readyz-probe", daemon=True).start()
        return fut

    def _remember(self, fut: asyncio.Future[dict[str, Any]]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._last = (time.monotonic(), fut.result())
