"""A job's money caps while it runs: every model request the server may bill is counted before it is sent.

``max_calls`` bounds the model requests sent (HTTP requests: a retry, a JSON repair and the summary
included, the summary on what ``Caps.calls_left`` leaves), so a request whose reply was lost after the
server processed (and billed) it is inside the cap; ``max_video_tokens`` bounds the video tokens stored
plus those of the requests in flight, a retry counting its segment's tokens again. A runner reserves a
segment's first request before sampling it (``reserve``); the describer asks the ``guard`` of its
request before every request it sends (the first is checked again then: calls that finished meanwhile
may have been billed more than estimated; a retry or a repair is reserved); the reservation is released
once the segment's usage is in the store.

Reservations live in the result store (``ResultStore.reserve_spend``), checked and taken in one
transaction per job, so every process working on the job — the inline runner's threads, every Celery
worker — sees every other's requests in flight: the caps hold across workers. A reservation expires
``ttl_s`` after its last request was allowed (a worker that died stops holding its share) and stops
counting once its segment's usage is stored (the same write ends the segment), so no segment is
counted twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from worker.core.ports import ResultStore
from worker.errors import BudgetExceeded


@dataclass(frozen=True, slots=True)
class Caps:
    """A job's resolved caps (None: no cap), where its usage and reservations are kept, and how long a
    reservation lives after its last request was allowed (longer than one request may take)."""

    job_id: str
    store: ResultStore
    calls: int | None
    video_tokens: int | None
    ttl_s: float = 300.0

    def reason(self, calls: int, tokens: int, made: tuple[int, int]) -> str | None:
        """Why ``calls`` more requests billing ``tokens`` video tokens must not be sent when ``made``
        (requests, video tokens) are stored or in flight (None: they may)."""
        if self.calls and made[0] + calls > self.calls:
            return f"stopped early: call cap of {self.calls} reached ({made[0]} model request(s) made or in flight)"
        if self.video_tokens and made[1] + tokens > self.video_tokens:
            return (
                f"stopped early: video token cap of {self.video_tokens} reached ({made[1]} used or in flight; "
                f"the next request needs about {tokens})"
            )
        return None

    def calls_left(self) -> int | None:
        """The requests ``calls`` still allows after every stored one (the segments' retries and repairs,
        an earlier summary attempt's: each may have been billed): the summary's share, asked once no
        segment is in flight. None: no call cap."""
        if not self.calls:
            return None
        return max(0, self.calls - self.store.usage(self.job_id)["http_attempts"])

    def take(self, key: str, index: int, calls: int, tokens: int) -> None:
        """Reserve ``calls`` requests and ``tokens`` under ``key`` in the store, or BudgetExceeded."""
        if not (self.calls or self.video_tokens):
            return
        made = self.store.reserve_spend(
            self.job_id, key, index, calls, tokens,
            max_calls=self.calls, max_video_tokens=self.video_tokens, ttl_s=self.ttl_s,
        )  # fmt: skip
        if made is not None:
            raise BudgetExceeded(self.reason(calls, tokens, made) or "stopped early: a cap was reached")


@dataclass
class Ticket:
    """One segment's reservation under its job's caps: requests and video tokens not yet in the store."""

    caps: Caps
    index: int
    key: str
    confirmed: bool = False  # whether the first (reserved) request was checked again when sent
    released: bool = False

    def guard(self, video_tokens: int) -> None:
        """Before every request of this segment, when it is sent: the first, reserved at admission, is
        checked again (what finished meanwhile may have been billed more than estimated); a further one
        (a retry, a repair) is reserved. BudgetExceeded: not sent."""
        if not self.confirmed:
            self.confirmed = True
            self.caps.take(self.key, self.index, 0, 0)
        else:
            self.caps.take(self.key, self.index, 1, video_tokens)

    def release(self) -> None:
        """The segment's usage is stored (saved or failed), or it sent nothing: the reservation goes."""
        if not self.released:
            self.released = True
            if self.caps.calls or self.caps.video_tokens:
                self.caps.store.release_spend(self.key)

    @contextmanager
    def storing(self) -> Iterator[None]:
        """Around the store write of this segment's usage. The write itself ends the reservation's count
        (its segment is no longer active), the release then deletes it."""
        yield
        self.release()


def reserve(caps: Caps, video_tokens: int, index: int) -> Ticket:
    """Segment ``index``'s first request, before the segment is sampled: reserved in the store for the
    job, or BudgetExceeded when it would pass a cap. Release the ticket once the segment's usage is stored."""
    ticket = Ticket(caps, index, uuid.uuid4().hex)
    caps.take(ticket.key, index, 1, video_tokens)
    return ticket
