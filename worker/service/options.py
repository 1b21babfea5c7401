"""A job's options resolved over the settings once (``JobOptions.apply``): the steps read ``Resolved``,
never ``opts.X or settings.Y.X`` (the planner's own ``worker.options.plan_params`` covers sampling)."""

from __future__ import annotations

from worker.config import Settings
from worker.options import JobOptions, Resolved

__all__ = ["Resolved", "resolve"]


def resolve(opts: JobOptions, settings: Settings) -> Resolved:
    """``opts.apply(settings)``: computed once per parsed options and settings, then reused."""
    return opts.apply(settings)
