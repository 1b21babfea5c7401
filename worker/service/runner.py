"""The in-process runner (``framescribe run``, the inline queue): one sequential decode pass feeds a
bounded pool of describer calls, so sampling the next segments overlaps the calls in flight.

``describer.concurrency`` call slots run calls; up to as many sampled segments more wait for a slot, so a
slot that frees starts the next segment at once and the decoder keeps sampling meanwhile. A segment's
reservation under the job's caps is taken when its call gets a slot (as a Celery task takes it just before
its one segment), so segments waiting for a slot hold none and never crowd out a retry in flight. Calls are
settled in the order they finish; a stop or a cancel drops the segments still waiting for a slot."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from worker import failpoints
from worker.core.models import Description, Job, JobSummary
from worker.core.ports import Describer, DescribeRequest
from worker.core.search import EMBED_BATCH
from worker.core.states import JobState
from worker.core.summary import build_summary
from worker.errors import BudgetExceeded, DescriberAuthError, DescriberError, FramescribeError, InputError, StoreError
from worker.service import reuse
from worker.service.caps import Ticket
from worker.service.context import Ports
from worker.service.finish import finish
from worker.service.plan import options_of, plan, plan_from, reserve_call
from worker.service.segment import Sampled, describe_and_store, fail, keep_review_copies, sample_segment


def run_inline(
    ports: Ports, job_id: str, finish_job: Callable[[Ports, str, str | None], JobSummary | None] = finish
) -> JobSummary:
    """The embedded runner: one sequential decode pass feeds a bounded pool of describer calls,
    so sampling the next segments overlaps the calls in flight. ``finish_job`` summarises at the end
    (the job service passes its own, which also sends the webhook)."""
    store = ports.store
    indexes = plan(ports, job_id)
    job = store.get_job(job_id)
    opts = options_of(job)
    limit = max(1, ports.settings.describer.concurrency)
    halt = threading.Event()  # set when the run stops (credentials refused, a cap met): queued calls are not made

    def stopped() -> bool:  # asked by a call when it gets its slot: a cancel also drops the calls not yet sent
        return halt.is_set() or store.get_job(job_id).state == JobState.CANCELLED

    slots = _Slots(limit, halt)  # a call holds one from its cache lookup until its usage is stored
    turns = itertools.count()  # the order the segments' calls get their slots: the order they were sampled
    describer: Describer = _Failpoints(ports.describer_for(opts), job_id)
    wait_previous = ports.settings.describer.continuity
    stop: str | None = None
    room = 2 * limit  # segments submitted and not settled: `limit` calls running, as many ready in the queue
    inflight: list[tuple[int, Future[Description], _Reservation]] = []  # (index, call, its reservation)
    before: Future[Description] | None = None  # the previous segment's call, for $previous
    vectors = _Vectors(partial(ports.index, job_id), EMBED_BATCH)  # segments embedded in one request
    flying: dict[int, tuple[list[int], Future[Description]]] = {}  # frame hashes of calls in flight

    def settle(block: bool) -> None:
        """Store the calls that finished (in any order); wait for one while ``room`` is full (or for all)."""
        while inflight:
            finished = [entry for entry in inflight if entry[1].done()]
            for entry in finished:
                inflight.remove(entry)
                settle_one(*entry)
            if stop:  # describe no more
                drop_queued()
            if not inflight or not (block or len(inflight) >= room):
                return
            if not finished:
                wait([entry[1] for entry in inflight], return_when=FIRST_COMPLETED)

    def drop_queued() -> None:
        """The segments ready for a slot are not sent (their rows are cancelled with the rest)."""
        halt.set()
        for entry in inflight:
            entry[1].cancel()

    def settle_one(index: int, fut: Future[Description], reservation: _Reservation) -> None:
        nonlocal stop
        ticket = reservation.ticket
        try:
            desc = fut.result()  # stored, and indexed for meaning-based search by its call's thread
            ports.on_event("segment_done", {"job_id": job_id, "index": index, "text": desc.text})
        except DescriberAuthError as exc:
            fail(ports, job_id, index, exc, 0, ticket)
            if stop is None:
                store.set_job_state(job_id, JobState.RUNNING, exc.message, only_from=(JobState.RUNNING,))
            stop = exc.message
        except BudgetExceeded as exc:  # a retry or repair would have passed a cap: describe no more
            fail(ports, job_id, index, exc, 0, ticket)
            stop = stop or exc.message
        except (InputError, DescriberError, StoreError) as exc:
            fail(ports, job_id, index, exc, 0, ticket)
        except (_Halted, CancelledError):
            pass  # never called; cancelled below with the reason
        finally:
            if ticket is not None:
                ticket.release()  # its usage is stored (saved or failed)

    with (
        ports.open_source(job) as reader,
        ThreadPoolExecutor(room, thread_name_prefix="describe") as pool,
    ):
        wanted = set(indexes)
        for row in store.segment_rows(job_id):  # streamed in index order: one query per 500 segments
            if stop:
                break
            if row.index not in wanted:
                continue
            index, plan_ = row.index, plan_from(row)
            if not store.claim_segment(job_id, index):  # done, static, or cancelled with the job
                if store.get_job(job_id).state == "cancelled":
                    drop_queued()
                    break
                before = None
                continue
            try:
                sampled = sample_segment(ports, reader, plan_, ports.frames.folder(job_id, index), opts)
            except (InputError, StoreError) as exc:
                fail(ports, job_id, index, exc, plan_.start_ms)
                before = None
                continue
            reuse.wait_for_twin(sampled.hashes, flying, ports.settings)  # then reuse it, no call
            reservation = _Reservation(partial(reserve_call, ports, job, plan_.frame_count, index))
            call = _Call(describer, before, wait_previous, halt, reservation, slots, next(turns), stopped, vectors)
            fut = pool.submit(_describe_after, ports, job, sampled, call)
            flying[index] = (sampled.hashes, fut)
            inflight.append((index, fut, reservation))
            before = fut
            settle(block=False)
        settle(block=True)
    vectors.flush()  # the last segments' search vectors, before the job is summarised
    if stop:
        store.cancel_remaining(job_id, stop)
    summary = finish_job(ports, job_id, stop)
    if summary is None:  # somebody else summarised (a cancel, or a concurrent runner)
        stored = store.get_job(job_id).summary or {}
        return build_summary(store.segment_rows(job_id), int(stored.get("duration_ms", 0)), stop)
    return summary


class _Failpoints:
    """The test failpoints around each call (``worker.failpoints``; off unless the tests arm them)."""

    def __init__(self, inner: Describer, job_id: str) -> None:
        self.inner, self.name, self.job_id = inner, inner.name, job_id

    def describe(self, request: DescribeRequest) -> Description:
        failpoints.hit("before_describe", self.job_id, request.plan.index)
        desc = self.inner.describe(request)
        failpoints.hit("after_describe", self.job_id, request.plan.index)
        return desc

    def __getattr__(self, name: str) -> Any:  # complete(), listener ... of the real describer
        return getattr(self.inner, name)


class _Halted(Exception):
    """A queued call dropped because an earlier one was refused for its credentials."""


class _Slots:
    """``limit`` call slots handed out in turn order (the order the segments were sampled), so the segments'
    reservations under the caps are taken in that order too; a stop (``halt``) wakes every waiter."""

    def __init__(self, limit: int, halt: threading.Event) -> None:
        self.cond = threading.Condition()
        self.limit, self.halt = limit, halt
        self.active = self.next = 0
        self.skipped: set[int] = set()  # turns given up before their slot (bounded: at most `room` wait)

    @contextmanager
    def held(self, turn: int) -> Iterator[None]:
        """The slot for ``turn`` once every earlier turn has passed (``skip``): the holder passes its turn
        on when its reservation is taken (at the latest when it gives the slot back); _Halted when the run
        stops first."""
        with self.cond:
            while not (self.next == turn and self.active < self.limit):
                if self.halt.is_set():
                    self._skip(turn)
                    raise _Halted
                self.cond.wait(0.5)  # woken by a release; a halt is seen within half a second
            self.active += 1
        try:
            yield
        finally:
            with self.cond:
                self.active -= 1
                self._skip(turn)

    def skip(self, turn: int) -> None:
        """``turn`` is done with the order: the next one may take a slot."""
        with self.cond:
            self._skip(turn)

    def _skip(self, turn: int) -> None:
        if turn >= self.next:
            self.skipped.add(turn)
        while self.next in self.skipped:
            self.skipped.discard(self.next)
            self.next += 1
        self.cond.notify_all()


class _Reservation:
    """A segment's first request under the job's caps (``service/caps.py``), reserved when its call gets a
    slot; ``ticket`` stays None until then (and for a job without caps)."""

    def __init__(self, take: Callable[[], Ticket | None]) -> None:
        self._take = take
        self.ticket: Ticket | None = None

    def take(self) -> Ticket | None:
        """BudgetExceeded when the request would pass a cap."""
        self.ticket = self._take()
        return self.ticket


class _Vectors:
    """Stored segments waiting for their search vectors: the call thread that fills a batch of ``size`` embeds
    it (one embedding request for the batch instead of one a segment), and the run embeds the rest at its end.
    A segment is searchable by meaning a few segments after it is stored; a run that dies leaves at most
    ``size - 1`` without vectors, which ``framescribe reindex`` fills in."""

    def __init__(self, embed: Callable[[list[int]], None], size: int) -> None:
        self._embed, self._size = embed, size
        self._lock = threading.Lock()
        self._waiting: list[int] = []

    def add(self, index: int) -> None:
        with self._lock:
            self._waiting.append(index)
            if len(self._waiting) < self._size:
                return
            batch, self._waiting = self._waiting, []
        self._embed(batch)

    def flush(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        if batch:
            self._embed(batch)


@dataclass(frozen=True, slots=True)
class _Call:
    """How one segment's call runs in the pool."""

    describer: Describer
    before: Future[Description] | None  # the previous segment's call, for $previous
    wait: bool  # continuity: wait for it (calls run one after another)
    halt: threading.Event  # set by a call refused for its credentials or by a cap
    reservation: _Reservation  # the segment's reservation under the job's caps, taken with the slot
    slots: _Slots  # `concurrency` calls at once, in the order the segments were sampled
    turn: int  # this segment's place in that order
    stopped: Callable[[], bool]  # the run stopped or the job was cancelled: do not send
    vectors: _Vectors  # the stored segments' search vectors, computed a batch at a time


def _describe_after(ports: Ports, job: Job, sampled: Sampled, call: _Call) -> Description:
    """Describe with the previous segment's description as context: waited for when ``continuity``
    is on (calls run one after another), else only when it has already finished. A call slot is held from
    the cache lookup until the usage is stored, so the caps' check before the next request sees it; the review
    copies are stored before (while the segment waits for a slot) and the search vectors after."""
    try:
        if not call.halt.is_set():  # first, with no slot held: a slot is held only for the lookup, call and row
            keep_review_copies(ports, job.id, sampled)
    except BaseException:
        call.slots.skip(call.turn)  # the segments after it still get their turn
        raise
    previous = None
    before = call.before
    if before is not None and (call.wait or before.done()):
        try:
            previous = before.result().text
        except (FramescribeError, _Halted, CancelledError):
            previous = None
    with call.slots.held(call.turn):
        if call.stopped():  # the run stopped (or the job was cancelled) while this call waited for a slot
            raise _Halted
        try:  # the first request, counting the calls in flight; the first segment to meet a cap fails with it
            try:
                ticket = call.reservation.take()
            finally:
                call.slots.skip(call.turn)  # reserved in turn: the next segment may take a free slot
            desc = describe_and_store(ports, job, call.describer, sampled, previous, ticket, copies_kept=True)
        except (DescriberAuthError, BudgetExceeded):
            call.halt.set()  # the calls waiting for a slot are not sent (cancelled with the rest)
            raise
    if ticket is not None:
        ticket.release()  # stored: counted by the store from now on (a failure is released once recorded)
    call.vectors.add(sampled.plan.index)  # search vectors: on a call thread, not the decoding one, with no slot
    return desc
