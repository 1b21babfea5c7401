"""Enqueuer adapters: ``CeleryEnqueuer`` (tasks by name over Redis) and ``InlineEnqueuer`` (a thread here)."""

from worker.adapters.queue.celery import CeleryEnqueuer
from worker.adapters.queue.inline import InlineEnqueuer

__all__ = ["CeleryEnqueuer", "InlineEnqueuer"]
