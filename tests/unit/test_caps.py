"""The running caps (worker/service/caps.py): every request the server may bill is reserved before it is
sent, counting what is stored and what is in flight in this process, never a segment twice."""

from __future__ import annotations

import threading
import uuid
from typing import cast

import pytest

from worker.core.ports import ResultStore
from worker.errors import BudgetExceeded
from worker.service import caps


class Usage:
    """What the store holds: requests sent and video tokens (as ``store.usage`` reports them)."""

    def __init__(self) -> None:
        self.http = 0
        self.video = 0

    def usage(self, job_id: str) -> dict[str, int]:
        return {"http_attempts": self.http, "video_tokens": self.video}


def job(calls: int | None = None, video: int | None = None) -> tuple[Usage, caps.Caps]:
    stored = Usage()
    return stored, caps.Caps(uuid.uuid4().hex, cast(ResultStore, stored), calls, video)


def test_max_calls_counts_in_flight_retries_and_the_first_request_when_sent() -> None:
    stored, c = job(calls=3)
    a, b = caps.reserve(c, 0), caps.reserve(c, 0)
    a.guard(0)  # a's first request, sent: checked again, nothing more reserved
    a.guard(0)  # its reply was lost after processing: the retry is a third request
    with pytest.raises(BudgetExceeded, match="call cap of 3"):
        caps.reserve(c, 0)  # a fourth would pass the cap
    b.guard(0)  # b's first request: reserved at admission, fine when sent
    with pytest.raises(BudgetExceeded):
        b.guard(0)  # a retry of b would be a fourth request
    with a.storing():  # a's two requests are stored and released in one step
        stored.http += 2
    with b.storing():
        stored.http += 1
    with pytest.raises(BudgetExceeded, match=r"\(3 model request\(s\) made or in flight\)"):
        caps.reserve(c, 0)


def test_max_video_tokens_re_checks_when_sent_and_counts_a_retry_again() -> None:
    stored, c = job(video=250)
    a = caps.reserve(c, 100)
    b = caps.reserve(c, 100)  # 200 in flight
    with a.storing():
        stored.video += 180  # a was billed more than estimated
    with pytest.raises(BudgetExceeded, match="video token cap of 250"):
        b.guard(100)  # b's first request, when sent: 180 stored + its 100 > 250 — not sent
    with b.storing():
        pass  # b is recorded as failed: nothing billed
    d = caps.reserve(c, 50)  # 180 + 50 fits
    d.guard(50)
    with pytest.raises(BudgetExceeded):
        d.guard(50)  # a retry counts its tokens again: 180 + 100 > 250


def test_no_cap_reserves_nothing_and_never_refuses() -> None:
    _, c = job()
    t = caps.reserve(c, 10**9)
    for _ in range(10):
        t.guard(10**9)
    assert c.reason(10**9, 10**9) is None


def test_concurrent_reservations_never_pass_the_cap() -> None:
    stored, c = job(calls=25)
    granted: list[caps.Ticket] = []
    lock = threading.Lock()

    def segment() -> None:
        for _ in range(10):
            try:
                t = caps.reserve(c, 0)
            except BudgetExceeded:
                continue
            with lock:
                granted.append(t)

    threads = [threading.Thread(target=segment) for _ in range(5)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(granted) == 25  # whatever the interleaving
    for t in granted:  # stored and released one by one: the total never moves past the cap
        with t.storing():
            stored.http += 1
    with pytest.raises(BudgetExceeded):
        caps.reserve(c, 0)

