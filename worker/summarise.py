"""The job summary: a DashScope text call over the segment descriptions, the local summary as fallback.

Long jobs are summarised in batches (each call's input stays under ``batch_tokens``), then the
batch summaries are summarised the same way, until one call covers the whole video. Every line is
cut to half a batch, so each batch holds at least two lines and every round shrinks the input.
Counts, chapters and state always come from the local summary (``core/summary.py``). The summary's
own calls are money too: their tokens and requests (failed ones included) are added to the job's usage
and kept apart as ``summary_usage``; ``max_calls`` (what the segments left of it) bounds them — a
summary that would pass it falls back to the local one.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from worker.adapters.describers.transport import Reply
from worker.core.budget import limits_for
from worker.core.models import JobSummary, SegmentRow
from worker.core.prompts import render
from worker.core.summary import DONE_STATES, build_summary
from worker.core.timecode import clock, span
from worker.errors import BudgetExceeded, DescriberAuthError, DescriberError, PlanError

log = logging.getLogger(__name__)
SYSTEM = "You write concise, factual summaries of videos from timed notes. Keep the times the notes give."
Line = tuple[int, int, str]  # start_ms, end_ms, text


class TextModel(Protocol):
    @property
    def summary_model(self) -> str: ...

    def complete(
        self, system: str, prompt: str, *, what: str = ..., job_id: str = ..., guard: Callable[[int], None] | None = ...
    ) -> tuple[Reply, int]: ...


@dataclasses.dataclass
class Tally:
    """The summary calls made so far (successful or not) and how many more requests are allowed."""

    model: str
    allowed: int | None = None
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    http_attempts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "calls": self.calls, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "http_attempts": self.http_attempts}  # fmt: skip

    def add(self, input_tokens: int, output_tokens: int, http_attempts: int, calls: int = 1) -> None:
        self.calls += calls
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.http_attempts += http_attempts


def with_tally(summary: JobSummary, tally: Tally | None) -> JobSummary:
    """The summary with the summary calls' usage added to the job's totals."""
    if tally is None or not (tally.calls or tally.http_attempts):
        return summary
    return dataclasses.replace(
        summary,
        input_tokens=summary.input_tokens + tally.input_tokens,
        output_tokens=summary.output_tokens + tally.output_tokens,
        calls=summary.calls + tally.calls,
        summary_usage=tally.as_dict(),
    )


def tokens(text: str) -> int:
    """A cautious count: three UTF-8 bytes a token (CJK is about one character a token)."""
    return len(text.encode("utf-8")) // 3 + 1


def summarise(
    rows: Callable[[], Iterable[SegmentRow]],
    duration_ms: int,
    stopped_reason: str | None,
    *,
    model: TextModel | None,
    template: str,
    source_name: str,
    batch_tokens: int,
    job_id: str = "",
    calls_left: int | None = None,
) -> JobSummary:
    """The model's summary when it can give one, else the local one; never raises for a model failure.
    ``calls_left``: how many model calls the job's ``max_calls`` still allows (None: no cap)."""
    local = build_summary(rows(), duration_ms, stopped_reason)
    if model is None or local.segments_done == 0:
        return local
    tally = Tally(model.summary_model, calls_left)
    result = _summarise(rows, local, model, template, source_name, batch_tokens, job_id, stopped_reason, tally)
    return with_tally(result, tally)


def _summarise(
    rows: Callable[[], Iterable[SegmentRow]],
    local: JobSummary,
    model: TextModel,
    template: str,
    source_name: str,
    batch_tokens: int,
    job_id: str,
    stopped_reason: str | None,
    tally: Tally,
) -> JobSummary:
    duration_ms = local.duration_ms
    budget = min(batch_tokens, limits_for(model.summary_model).max_input_tokens - 1000)
    budget -= tokens(SYSTEM) + tokens(template) + 50
    if budget < 200:
        log.warning("job %s: summary input budget too small (%d tokens); using the local summary", job_id, budget)
        return local
    try:
        text = _reduce(_lines(rows()), model, template, source_name, duration_ms, budget, job_id, tally)
    except BudgetExceeded as exc:
        log.warning("job %s: %s; using the local summary", job_id, exc.message)
        return local
    except DescriberAuthError as exc:
        log.warning("job %s: the model summary was refused (%s); using the local summary", job_id, exc.message)
        return local
    except (DescriberError, PlanError) as exc:
        log.warning("job %s: the model summary failed (%s); using the local summary", job_id, exc.message)
        return local
    notes = []
    if local.segments_failed:
        first = next((r for r in rows() if r.state == "failed"), None)
        why = f", the first at {clock(first.start_ms)}: {first.error}" if first and first.error else ""
        notes.append(f"{local.segments_failed} of {local.segments_total} segments could not be described{why}")
    if stopped_reason:
        notes.append(stopped_reason.rstrip("."))
    if notes:
        text = f"{text.strip()} ({'; '.join(notes)}.)"
    return dataclasses.replace(local, text=text.strip(), source="dashscope")


def _lines(rows: Iterable[SegmentRow]) -> Iterator[Line]:
    for row in rows:
        if row.state in DONE_STATES and row.description:
            yield row.start_ms, row.end_ms, " ".join(row.description.split())


def _reduce(
    lines: Iterable[Line],
    model: TextModel,
    template: str,
    source: str,
    duration_ms: int,
    budget: int,
    job_id: str,
    tally: Tally,
) -> str:
    """Summaries of batches, then of those, until one call has seen everything."""
    level = 0
    while True:
        level += 1
        partials: list[Line] = []
        batch: list[Line] = []
        size = 0
        for start, end, text in lines:
            line = _fit(start, end, text, budget // 2)
            if batch and size + tokens(line) > budget:
                partials.append(_call(batch, model, template, source, duration_ms, job_id, level, tally))
                batch, size = [], 0
            batch.append((start, end, line))
            size += tokens(line)
        if not batch:
            raise PlanError("nothing to summarise")
        if not partials:  # everything fitted in one call: that is the summary
            return _call(batch, model, template, source, duration_ms, job_id, level, tally)[2]
        partials.append(_call(batch, model, template, source, duration_ms, job_id, level, tally))
        log.info("job %s: summary round %d gave %d batch summaries", job_id, level, len(partials))
        lines = partials


def _fit(start: int, end: int, text: str, limit: int) -> str:
    line = f"[{span(start, end)}] {text}"
    while tokens(line) > limit:
        line = line[: max(16, len(line) * limit // tokens(line) - 1)].rstrip() + "…"
    return line


def _call(
    batch: list[Line],
    model: TextModel,
    template: str,
    source: str,
    duration_ms: int,
    job_id: str,
    level: int,
    tally: Tally,
) -> Line:
    text = "\n".join(line for _, _, line in batch)
    prompt = render(template, {"segments": text, "source": source, "duration": clock(duration_ms), "count": len(batch)})
    sent = tally.http_attempts

    def guard(_video_tokens: int) -> None:  # before every request (retries too): max_calls counts requests
        nonlocal sent
        if tally.allowed is not None and sent >= tally.allowed:
            raise BudgetExceeded(f"the model summary would pass the call cap ({sent} summary request(s) sent)")
        sent += 1

    try:
        reply, _ = model.complete(
            SYSTEM, prompt, what=f"job {job_id} summary (round {level})", job_id=job_id, guard=guard
        )
    except (DescriberError, BudgetExceeded) as exc:
        spent = getattr(exc, "spent", None)
        if spent is not None:
            tally.add(spent.input_tokens, spent.output_tokens, spent.http_attempts, calls=0)
        raise
    tally.add(reply.input_tokens, reply.output_tokens, reply.http_attempts)
    return batch[0][0], batch[-1][1], " ".join(reply.text.split())
