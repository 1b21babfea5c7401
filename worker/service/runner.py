"""The in-process runner (``framescribe run``, the inline queue): one sequential decode pass feeds a
bounded pool of describer calls, so sampling the next segments overlaps the calls in flight.

``describer.concurrency`` call slots run calls; up to as many sampled segments more wait for a slot (each
holding its reservation under the job's caps), so a slot that frees starts the next segment at once and the
decoder keeps sampling meanwhile. Calls are settled in the order they finish; a stop or a cancel drops the
segments still waiting for a slot."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from worker import failpoints
from worker.core.models import Description, Job, JobSummary
from worker.core.ports import Describer, DescribeRequest
from worker.core.states import JobState
from worker.core.summary import build_summary
from worker.errors import BudgetExceeded, DescriberAuthError, DescriberError, FramescribeError, InputError, StoreError
from worker.service import reuse
from worker.service.caps import Ticket
from worker.service.context import Ports
from worker.service.finish import finish
from worker.service.plan import options_of, plan, plan_of_row, reserve_call
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

    slots = threading.BoundedSemaphore(limit)  # a call holds one from its cache lookup until its usage is stored
    describer: Describer = _Failpoints(ports.describer_for(opts), job_id)
    wait_previous = ports.settings.describer.continuity
    stop: str | None = None
    room = 2 * limit  # segments submitted and not settled: `limit` calls running, as many ready in the queue
    inflight: list[tuple[int, Future[Description], Ticket | None]] = []  # (index, call, its reservation)
    before: Future[Description] | None = None  # the previous segment's call, for $previous
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

    def settle_one(index: int, fut: Future[Description], ticket: Ticket | None) -> None:
        nonlocal stop
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
        for index in indexes:
            if stop:
                break
            if store.get_job(job_id).state == "cancelled":
                drop_queued()
                break
            plan_ = plan_of_row(store, job_id, index)
            try:  # the segment's first request, counting the calls in flight (service/caps.py)
                ticket = reserve_call(ports, job, plan_.frame_count, index)
            except BudgetExceeded as exc:  # the next call would pass a cap: keep what is done, describe no more
                settle(block=True)  # the calls in flight end first (one of them may meet the cap when sent)
                if stop is None:  # else this segment is cancelled with the rest, below
                    stop = exc.message  # the first segment that meets the cap fails with it (as under Celery)
                    if store.claim_segment(job_id, index):
                        fail(ports, job_id, index, exc, plan_.start_ms)
                break
            if not store.claim_segment(job_id, index):
                if ticket is not None:
                    ticket.release()
                before = None
                continue
            try:
                sampled = sample_segment(ports, reader, plan_, ports.frames.folder(job_id, index), opts)
            except (InputError, StoreError) as exc:
                fail(ports, job_id, index, exc, plan_.start_ms)
                if ticket is not None:
                    ticket.release()
                before = None
                continue
            reuse.wait_for_twin(sampled.hashes, flying, ports.settings)  # then reuse it, no call
            call = _Call(describer, before, wait_previous, halt, ticket, slots, stopped)
            fut = pool.submit(_describe_after, ports, job, sampled, call)
            flying[index] = (sampled.hashes, fut)
            inflight.append((index, fut, ticket))
            before = fut
            settle(block=False)
        settle(block=True)
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


@dataclass(frozen=True, slots=True)
class _Call:
    """How one segment's call runs in the pool."""

    describer: Describer
    before: Future[Description] | None  # the previous segment's call, for $previous
    wait: bool  # continuity: wait for it (calls run one after another)
    halt: threading.Event  # set by a call refused for its credentials
    ticket: Ticket | None  # the segment's reservation under the job's caps
    slots: threading.BoundedSemaphore  # `concurrency` calls at once
    stopped: Callable[[], bool]  # the run stopped or the job was cancelled: do not send


def _describe_after(ports: Ports, job: Job, sampled: Sampled, call: _Call) -> Description:
    """Describe with the previous segment's description as context: waited for when ``continuity``
    is on (calls run one after another), else only when it has already finished. A call slot is held from
    the cache lookup until the usage is stored, so the caps' check before the next request sees it; the review
    copies are stored before (while the segment waits for a slot) and the search vectors after."""
    if not call.halt.is_set():  # first, with no slot held: a slot is held only for the lookup, call and row
        keep_review_copies(ports, job.id, sampled.plan.index, sampled.frames)
    previous = None
    before = call.before
    if before is not None and (call.wait or before.done()):
        try:
            previous = before.result().text
        except (FramescribeError, _Halted, CancelledError):
            previous = None
    with call.slots:
        if call.stopped():  # the run stopped (or the job was cancelled) while this call waited for a slot
            raise _Halted
        try:
            desc = describe_and_store(ports, job, call.describer, sampled, previous, call.ticket, copies_kept=True)
        except DescriberAuthError:
            call.halt.set()
            raise
    if call.ticket is not None:
        call.ticket.release()  # stored: counted by the store from now on (a failure is released once recorded)
    ports.index(job.id, sampled.plan.index)  # search vectors: here, not on the decoding thread, and with no slot
    return desc
