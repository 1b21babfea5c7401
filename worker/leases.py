"""Renewing a lease in the background while a piece of work runs (a segment task, a summary call).

The lease lives in the result store (owner + expiry); the recovery loop (``worker/recovery.py``)
re-queues work whose lease expired, so a worker that dies, or loses Redis, is noticed within
``worker.lease_ttl_s`` instead of Redis' visibility timeout."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)


def new_owner() -> str:
    """A lease owner id: host, pid and a random part (fits the 64-character column)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def renewing(renew: Callable[[], object], every_s: float, what: str) -> Iterator[threading.Event]:
    """Call ``renew`` every ``every_s`` in a daemon thread until the block ends. A renewal that raises
    (the store is down) is logged and tried again at the next tick. Yields an event set when a renewal
    reported the lease lost (``renew`` returned False)."""
    stop = threading.Event()
    lost = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                if renew() is False:
                    lost.set()
            except Exception as exc:  # the store is unreachable: the lease may lapse; the work goes on
                log.warning("%s: cannot renew the lease (%s: %s)", what, type(exc).__name__, exc)

    thread = threading.Thread(target=loop, name=f"lease {what}", daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        stop.set()
        thread.join(timeout=every_s + 5)
