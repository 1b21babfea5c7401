"""A job's money caps while it runs: every model request the server may bill is counted before it is sent.

``max_calls`` bounds the model requests sent (HTTP requests: a retry, a JSON repair and the summary
included), so a request whose reply was lost after the server processed (and billed) it is inside the
cap; ``max_video_tokens`` bounds the video tokens stored plus those of the requests in flight, a retry
counting its segment's tokens again. A runner reserves a segment's first request before sampling it
(``reserve``); the describer asks the ``guard`` of its request before every request it sends (the first
is checked again then: calls that finished meanwhile may have been billed more than estimated; a retry
or a repair is reserved); the reservation is released once the segment's usage is in the store.

The in-flight share is per process (the inline runner's threads share one ``Ledger`` per job); under
Celery each worker process sees the others' requests only once they are stored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from worker.core.ports import ResultStore
from worker.errors import BudgetExceeded


@dataclass(frozen=True, slots=True)
class Caps:
    """A job's resolved caps (None: no cap) and where its stored usage is read."""

    job_id: str
    store: ResultStore
    calls: int | None
    video_tokens: int | None

    def reason(self, calls: int, tokens: int, in_flight: tuple[int, int] = (0, 0)) -> str | None:
        """Why ``calls`` more requests billing ``tokens`` video tokens must not be sent (None: they may),
        counting what is stored and ``in_flight`` (requests, video tokens) not yet stored."""
        if not (self.calls or self.video_tokens):
            return None
        usage = self.store.usage(self.job_id)
        if self.calls:
            made = int(usage.get("http_attempts", 0)) + in_flight[0]
            if made + calls > self.calls:
                return f"stopped early: call cap of {self.calls} reached ({made} model request(s) made or in flight)"
        if self.video_tokens:
            used = int(usage.get("video_tokens", 0)) + in_flight[1]
            if used + tokens > self.video_tokens:
                return (
                    f"stopped early: video token cap of {self.video_tokens} reached ({used} used or in flight; "
                    f"the next request needs about {tokens})"
                )
        return None


@dataclass
class Ticket:
    """What one segment holds in its job's ledger: requests and video tokens not yet in the store."""

    caps: Caps
    ledger: Ledger
    calls: int = 0
    tokens: int = 0
    confirmed: bool = False  # whether the first (reserved) request was checked again when sent

    def guard(self, video_tokens: int) -> None:
        """Before every request of this segment, when it is sent: the first, reserved at admission, is
        checked again (what finished meanwhile may have been billed more than estimated); a further one
        (a retry, a repair) is reserved. BudgetExceeded: not sent."""
        if not self.confirmed:
            self.confirmed = True
            self.ledger.take(self, 0, 0)
        else:
            self.ledger.take(self, 1, video_tokens)

    def release(self) -> None:
        """The segment's usage is stored (saved or failed): its reservation is no longer in flight."""
        self.ledger.give_back(self)

    @contextmanager
    def storing(self) -> Iterator[None]:
        """Around the store write of this segment's usage: the write and the release are one step for the
        ledger, so no reservation ever sees the segment counted twice (stored and still in flight)."""
        with self.ledger.lock:
            yield
            self.ledger.give_back_locked(self)


@dataclass
class Ledger:
    """The requests and video tokens of one job in flight in this process."""

    calls: int = 0
    tokens: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def take(self, ticket: Ticket, calls: int, tokens: int) -> None:
        with self.lock:
            why = ticket.caps.reason(calls, tokens, (self.calls, self.tokens))
            if why:
                raise BudgetExceeded(why)
            self.calls += calls
            self.tokens += tokens
            ticket.calls += calls
            ticket.tokens += tokens

    def give_back(self, ticket: Ticket) -> None:
        with self.lock:
            self.give_back_locked(ticket)

    def give_back_locked(self, ticket: Ticket) -> None:
        self.calls -= ticket.calls
        self.tokens -= ticket.tokens
        ticket.calls = ticket.tokens = 0


_LEDGERS: dict[str, Ledger] = {}
_REGISTRY = threading.Lock()
_KEEP = 256  # idle ledgers kept before the registry is pruned (a worker process lives for many jobs)


def reserve(caps: Caps, video_tokens: int) -> Ticket:
    """A segment's first request, before the segment is sampled: reserved in the process' ledger of the
    job, or BudgetExceeded when it would pass a cap. Release the ticket once the segment's usage is stored."""
    with _REGISTRY:
        book = _LEDGERS.get(caps.job_id)
        if book is None:
            if len(_LEDGERS) >= _KEEP:
                for job_id in [j for j, b in _LEDGERS.items() if b.calls <= 0 and b.tokens <= 0]:
                    del _LEDGERS[job_id]
            book = _LEDGERS[caps.job_id] = Ledger()
    ticket = Ticket(caps, book)
    book.take(ticket, 1, video_tokens)
    return ticket
