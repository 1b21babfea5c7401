"""Putting work on the queue: the adapters live in ``worker.adapters.queue`` (re-exported here).

The API never imports task bodies: ``CeleryEnqueuer`` sends tasks by name to ``settings.worker.queue``;
``InlineEnqueuer`` runs them on a thread of the API process (``framescribe scheduler --inline``). A
broker that does not answer becomes ``QueueUnavailable`` (HTTP 503) within about a second.
"""

from __future__ import annotations

from worker.adapters.queue import CeleryEnqueuer, InlineEnqueuer
from worker.core.ports import Enqueuer
from worker.errors import QueueUnavailable

__all__ = ["CeleryEnqueuer", "Enqueuer", "InlineEnqueuer", "QueueUnavailable"]
