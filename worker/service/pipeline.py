"""One job through the ports, in order: plan -> sample -> describe -> store -> summary.

Celery tasks call ``plan``, ``run_segment`` and ``finish`` one by one; the in-process runner
(``run_inline``) does all of them with a bounded pool of calls. This module only names the steps.
"""

from worker.service.context import Event, Ports
from worker.service.finish import finish, job_summary
from worker.service.plan import (
    Estimate,
    analyse,
    check_budget,
    describer_kind,
    estimate,
    options_of,
    plan,
    plan_of_row,
    plans_for,
)
from worker.service.runner import run_inline
from worker.service.segment import Sampled, describe_and_store, run_segment, sample_segment

__all__ = [
    "Estimate",
    "Event",
    "Ports",
    "Sampled",
    "analyse",
    "check_budget",
    "describe_and_store",
    "describer_kind",
    "estimate",
    "finish",
    "job_summary",
    "options_of",
    "plan",
    "plan_of_row",
    "plans_for",
    "run_inline",
    "run_segment",
    "sample_segment",
]
