"""Money for a job: the frame size everything assumes, the summary's estimate, cost, dry-run report.

One frame size (``frame_budget``) is used to write frames, to estimate, to guard the running cap and
for what DashScope bills, so the four agree by construction: the frames are already as small as the
``max_pixels`` sent and the model's own per-frame limit, with sides multiples of the model's token
factor, so the service has nothing left to shrink (whether or not it honours ``max_pixels``).
"""

from __future__ import annotations

import math
from typing import Any

from worker.config import Settings
from worker.core import budget, money
from worker.core.models import JobSummary
from worker.errors import FramescribeError
from worker.options import JobOptions


def uses_dashscope(opts: JobOptions, settings: Settings) -> bool:
    return opts.apply(settings).paid


def model_of(opts: JobOptions, settings: Settings) -> str | None:
    r = opts.apply(settings)
    return r.model if r.paid else None


def frame_budget(opts: JobOptions, settings: Settings) -> money.FrameBudget:
    """Pixels and side multiple frames are written at for this job."""
    r = opts.apply(settings)
    return money.frame_budget(r.model if r.paid else None, settings.sampling.max_pixels, r.max_pixels)


def frame_size(width: int, height: int, opts: JobOptions, settings: Settings) -> tuple[int, int]:
    fb = frame_budget(opts, settings)
    return budget.frame_size(width, height, fb.max_pixels, fb.factor)


def summary_model(opts: JobOptions, settings: Settings) -> str | None:
    r = opts.apply(settings)
    return r.summary_model if r.paid else None


def summary_estimate(segments: int, settings: Settings) -> tuple[int, int, int]:
    """(calls, input tokens, output tokens) the model summary of ``segments`` descriptions may take: each
    description at most ``max_tokens`` long, batched by ``summary_batch_tokens``, reduced until one call."""
    ds = settings.dashscope
    if segments <= 0:
        return 0, 0, 0
    line = min(ds.max_tokens, ds.summary_batch_tokens // 2)
    calls = tokens_in = tokens_out = 0
    n = segments
    for _ in range(64):  # each round divides the lines by at least two
        batches = max(1, math.ceil(n * line / ds.summary_batch_tokens))
        calls += batches
        tokens_in += n * line + batches * 300  # the template and system prompt
        tokens_out += batches * ds.max_tokens
        if batches == 1:
            break
        n = batches
    return calls, tokens_in, tokens_out


def job_cost(usage: dict[str, Any], opts: JobOptions, settings: Settings) -> dict[str, Any]:
    """{"amount", "currency", "priced"} for a job's usage (segments at the VL model's price, the summary
    at the summary model's); {} when the job used no priced model."""
    ds = settings.dashscope
    model = model_of(opts, settings)
    if model is None:
        return {}
    s_in, s_out = int(usage.get("summary_input_tokens", 0)), int(usage.get("summary_output_tokens", 0))
    seg = money.cost(model, int(usage["input_tokens"]) - s_in, int(usage["output_tokens"]) - s_out, 0, ds.prices)
    summ = money.cost(summary_model(opts, settings), s_in, s_out, 0, ds.prices) if (s_in or s_out) else 0.0
    if seg is None or summ is None:
        missing = model if seg is None else summary_model(opts, settings)
        return {"amount": None, "currency": ds.currency, "note": f"no price for {missing} in dashscope.prices"}
    return {"amount": round(seg + summ, 6), "currency": ds.currency}


def with_cost(summary: JobSummary, opts: JobOptions, settings: Settings) -> JobSummary:
    """The summary with its cost (from its own usage totals)."""
    import dataclasses

    su = summary.summary_usage
    usage = {
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "summary_input_tokens": int(su.get("input_tokens", 0)),
        "summary_output_tokens": int(su.get("output_tokens", 0)),
    }
    return dataclasses.replace(summary, cost=job_cost(usage, opts, settings))


def usage_line(usage: dict[str, Any], calls: int, opts: JobOptions, settings: Settings) -> str:
    """The CLI's one-line account of a job's spend (segments, repairs and the summary)."""
    cost = job_cost(usage, opts, settings)
    money_ = f", cost {cost['amount']:.4f} {cost['currency']}" if cost.get("amount") is not None else ""
    summ = ""
    if usage.get("summary_calls") or usage.get("summary_input_tokens"):
        summ = f" (summary: {usage['summary_input_tokens']} input / {usage['summary_output_tokens']} output)"
    return (
        f"Usage: {usage['input_tokens']} input / {usage['output_tokens']} output / {usage['video_tokens']} video "
        f"tokens in {calls} call(s), {usage.get('http_attempts', 0)} HTTP request(s){summ}{money_}"
    )


PROMPT_TOKENS = 300  # system + segment prompt + the previous description, per call (an estimate)


def estimate_extras(calls: int, video_tokens: int, opts: JobOptions, settings: Settings) -> dict[str, Any]:
    """What a dry run adds to the segments' video tokens: the summary's calls, input and output tokens
    (outputs at ``max_tokens``: an upper bound) and the cost at the configured prices."""
    model = model_of(opts, settings)
    if model is None or calls == 0:
        return {"summary_calls": 0, "input_tokens": 0, "output_tokens_max": 0, "cost": {}}
    max_out = opts.apply(settings).max_tokens
    s_calls, s_in, s_out = summary_estimate(calls, settings)
    seg_in = video_tokens + calls * PROMPT_TOKENS
    usage = {
        "input_tokens": seg_in + s_in,
        "output_tokens": calls * max_out + s_out,
        "summary_input_tokens": s_in,
        "summary_output_tokens": s_out,
    }
    cost = job_cost(usage, opts, settings)
    if cost.get("amount") is not None:
        cost["note"] = "upper bound: every reply at max_tokens"
    return {
        "summary_calls": s_calls,
        "input_tokens": usage["input_tokens"],
        "output_tokens_max": usage["output_tokens"],
        "cost": cost,
    }


def usage_with_cost(usage: dict[str, int], options: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A job's usage (``store.usage``) with ``cost`` and ``currency`` (None when its model has no price)."""
    try:
        opts = JobOptions.parse(options)
    except FramescribeError:
        opts = JobOptions()
    cost = job_cost(usage, opts, settings)
    return {**usage, "cost": cost.get("amount"), "currency": cost.get("currency")}
