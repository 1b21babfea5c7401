"""Job change notices: "job X's rows changed", so live viewers re-read the job once instead of polling.

A Celery worker publishes the job id on the broker's Redis (``CHANNEL``) when it plans a job, stores or
fails a segment, or ends the job (the CLI's cancel and retry likewise: ``announce``); the REST service
subscribes once per process and wakes the job's event feed (``scheduler.api.feed``). Notices are hints:
a lost one only delays a viewer until its feed's fallback poll, so publishing is best effort and never
fails the work that changed the row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

log = logging.getLogger(__name__)

CHANNEL = "framescribe:job-changes"
# on_event kinds that follow a row change (streamed text, "segment_text", changes no row)
CHANGE_EVENTS = frozenset({"planned", "segment_done", "segment_failed", "job_done"})

Event = Callable[[str, dict[str, Any]], None]


def changed_job(kind: str, data: dict[str, Any]) -> str | None:
    """The job whose rows an ``on_event`` call says changed, or None."""
    job_id = data.get("job_id")
    return job_id if kind in CHANGE_EVENTS and isinstance(job_id, str) and job_id else None


class RedisChanges:
    """An ``on_event`` listener publishing the job id of every row change on ``CHANNEL``."""

    def __init__(self, url: str, channel: str = CHANNEL) -> None:
        self.channel = channel
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        job_id = changed_job(kind, data)
        if job_id is not None:
            self.publish(job_id)

    def publish(self, job_id: str) -> None:
        """Say that job ``job_id``'s rows changed (best effort)."""
        try:
            self._client.publish(self.channel, job_id)
        except redis.RedisError as exc:  # viewers fall back to their slow poll
            log.debug("cannot publish the change of job %s: %s", job_id, exc)

    def close(self) -> None:
        self._client.close()


def announce(broker_url: str, job_id: str) -> None:
    """One notice for a change made outside a worker (the CLI's cancel and retry), so open event streams
    re-read the job at once; nothing when the broker is not Redis (``memory://``: no broker, no stream)."""
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        notice = RedisChanges(broker_url)
        notice.publish(job_id)
        notice.close()


def both(first: Event, second: Event) -> Event:
    """One ``on_event`` calling two listeners (the second even when the first raises)."""

    def call(kind: str, data: dict[str, Any]) -> None:
        try:
            first(kind, data)
        finally:
            second(kind, data)

    return call
