"""The running caps (worker/service/caps.py): every request the server may bill is reserved in the store
before it is sent, counting what is stored and what is in flight anywhere, never a segment twice.
(The SQL store's reservations, across processes: tests/integration/test_spend_reservations.py.)"""

from __future__ import annotations

import threading
from fractions import Fraction

import pytest

from tests.fakes.ports import FakeStore
from worker.core.models import Description, SegmentPlan, Usage, VideoInfo
from worker.errors import BudgetExceeded
from worker.service import caps


def job(segments: int, calls: int | None = None, video: int | None = None) -> tuple[FakeStore, caps.Caps]:
    store = FakeStore()
    j, _ = store.create_job("/v.mp4", "v.mp4", {})
    plans = [SegmentPlan(i, i * 1000, i * 1000 + 1000, Fraction(1), (i * 1000,)) for i in range(segments)]
    info = VideoInfo(segments * 1000, 1.0, segments, 64, 64, "h264", 1000)
    store.plan_job(j.id, info, plans)
    return store, caps.Caps(j.id, store, calls, video)


def save(store: FakeStore, c: caps.Caps, index: int, http: int = 1, video: int = 0) -> None:
    store.claim_segment(c.job_id, index)
    desc = Description("x", describer="dashscope", usage=Usage(video_tokens=video, http_attempts=http))
    assert store.save_segment(c.job_id, index, desc, [])


def test_max_calls_counts_in_flight_retries_and_the_first_request_when_sent() -> None:
    store, c = job(3, calls=3)
    a, b = caps.reserve(c, 0, 0), caps.reserve(c, 0, 1)
    a.guard(0)  # a's first request, sent: checked again, nothing more reserved
    a.guard(0)  # its reply was lost after processing: the retry is a third request
    with pytest.raises(BudgetExceeded, match="call cap of 3"):
        caps.reserve(c, 0, 2)  # a fourth would pass the cap
    b.guard(0)  # b's first request: reserved at admission, fine when sent
    with pytest.raises(BudgetExceeded):
        b.guard(0)  # a retry of b would be a fourth request
    with a.storing():  # a's two requests are stored: its reservation stops counting with the write
        save(store, c, 0, http=2)
    with b.storing():
        save(store, c, 1, http=1)
    assert store.reservations == {}
    with pytest.raises(BudgetExceeded, match=r"\(3 model request\(s\) made or in flight\)"):
        caps.reserve(c, 0, 2)


def test_a_stored_segment_is_never_counted_twice_before_its_release() -> None:
    store, c = job(2, calls=2)
    a = caps.reserve(c, 0, 0)
    a.guard(0)
    save(store, c, 0, http=1)  # stored, not yet released: the row's end ends the reservation's count
    b = caps.reserve(c, 0, 1)  # 1 stored + 1 = 2: allowed
    a.release()
    b.guard(0)


def test_max_video_tokens_re_checks_when_sent_and_counts_a_retry_again() -> None:
    store, c = job(3, video=250)
    a = caps.reserve(c, 100, 0)
    b = caps.reserve(c, 100, 1)  # 200 in flight
    with a.storing():
        save(store, c, 0, video=180)  # a was billed more than estimated
    with pytest.raises(BudgetExceeded, match="video token cap of 250"):
        b.guard(100)  # b's first request, when sent: 180 stored + its 100 > 250 — not sent
    with b.storing():
        store.claim_segment(c.job_id, 1)
        store.fail_segment(c.job_id, 1, "cap")  # b is recorded as failed: nothing billed
    d = caps.reserve(c, 50, 2)  # 180 + 50 fits
    d.guard(50)
    with pytest.raises(BudgetExceeded):
        d.guard(50)  # a retry counts its tokens again: 180 + 100 > 250


def test_an_expired_reservation_stops_counting_but_its_own_holder_still_counts_it() -> None:
    store, c = job(2, calls=1)
    short = caps.Caps(c.job_id, store, 1, None, ttl_s=-1)  # every reservation expires at once
    a = caps.reserve(short, 0, 0)  # a worker that dies holding it: the others stop counting it
    b = caps.reserve(c, 0, 1)
    with pytest.raises(BudgetExceeded):
        a.guard(0)  # but its holder, still alive, sees its own request plus b's: not sent
    b.guard(0)


def test_no_cap_reserves_nothing_and_never_refuses() -> None:
    store, c = job(1)
    t = caps.reserve(c, 10**9, 0)
    for _ in range(10):
        t.guard(10**9)
    assert store.reservations == {}
    assert c.reason(10**9, 10**9, (10**9, 10**9)) is None


def test_concurrent_reservations_never_pass_the_cap() -> None:
    store, c = job(50, calls=25)
    granted: list[caps.Ticket] = []
    lock = threading.Lock()

    def segment(first: int) -> None:
        for i in range(first, first + 10):
            try:
                t = caps.reserve(c, 0, i)
            except BudgetExceeded:
                continue
            with lock:
                granted.append(t)

    threads = [threading.Thread(target=segment, args=(n * 10,)) for n in range(5)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(granted) == 25  # whatever the interleaving
    for t in granted:  # stored and released one by one: the total never moves past the cap
        with t.storing():
            save(store, c, t.index)
    with pytest.raises(BudgetExceeded):
        caps.reserve(c, 0, 49)


def test_the_summary_gets_what_the_stored_requests_leave_of_max_calls() -> None:
    """The summary runs after every segment: its share is the cap less every request stored, retries
    and repairs included; no call cap, no limit."""
    store, c = job(3, calls=5)
    assert c.calls_left() == 5
    save(store, c, 0, http=1)
    save(store, c, 1, http=3)  # a lost reply's retry and a JSON repair
    assert c.calls_left() == 1
    save(store, c, 2, http=2)
    assert c.calls_left() == 0, "never below nothing"
    assert caps.Caps(c.job_id, store, None, 1000).calls_left() is None
