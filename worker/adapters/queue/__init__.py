"""Enqueuer adapters: ``CeleryEnqueuer`` (tasks by name over Redis) and ``InlineEnqueuer`` (a thread here).

Both load on first use, so a change notice (``changes``) or a broker scan imports no Celery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.adapters.queue.celery import CeleryEnqueuer
    from worker.adapters.queue.inline import InlineEnqueuer

__all__ = ["CeleryEnqueuer", "InlineEnqueuer"]


def __getattr__(name: str) -> Any:
    if name == "CeleryEnqueuer":
        from worker.adapters.queue.celery import CeleryEnqueuer

        return CeleryEnqueuer
    if name == "InlineEnqueuer":
        from worker.adapters.queue.inline import InlineEnqueuer

        return InlineEnqueuer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
