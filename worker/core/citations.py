"""Citations in answers: ``[01:23]`` or ``[01:23–01:41]`` (also ``[1:02:03]``, ``-`` for ``–``), checked by code.

Every cited time must fall inside a segment that was given to the model as evidence; a citation that
does not is removed from the answer and reported. Times are compared at whole seconds, as written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from worker.core.timecode import clock

_T = r"(?:\d{1,2}:)?\d{1,3}:\d{2}(?:\.\d{1,3})?"
CITATION = re.compile(rf"\[\s*({_T})\s*(?:[–—-]|to)?\s*({_T})?\s*\]")


@dataclass(frozen=True, slots=True)
class Span:
    """An evidence segment's time range and who it is."""

    start_ms: int
    end_ms: int
    key: tuple[str, int]  # (job_id, segment index)


@dataclass(frozen=True, slots=True)
class Citation:
    text: str
    start_ms: int
    end_ms: int
    key: tuple[str, int] | None  # the evidence segment it lands on; None when unsupported


def parse_time(value: str) -> int:
    """``MM:SS``, ``H:MM:SS`` or ``MMM:SS`` (optionally ``.fff``) -> milliseconds."""
    parts = value.split(":")
    seconds = float(parts[-1])
    minutes = int(parts[-2])
    hours = int(parts[-3]) if len(parts) == 3 else 0
    return round(((hours * 60 + minutes) * 60 + seconds) * 1000)


def _inside(t_ms: int, span: Span) -> bool:
    """At second resolution: [00:10] lies in a segment 9.6–20.4 s; the segment's end second counts."""
    return span.start_ms // 1000 <= t_ms // 1000 <= -(-span.end_ms // 1000)


def _covered(start: int, end: int, spans: Sequence[Span]) -> bool:
    """The whole range lies in evidence: the union of the spans covers it, gaps of up to a second allowed."""
    reach = start // 1000
    for s in sorted(spans, key=lambda s: s.start_ms):
        if s.start_ms // 1000 <= reach + 1 and -(-s.end_ms // 1000) > reach:
            reach = -(-s.end_ms // 1000)
        if reach >= end // 1000:
            return True
    return reach >= end // 1000


def _landing(start: int, end: int, spans: Sequence[Span]) -> Span | None:
    """The evidence segment holding the citation's start, when the whole range lies in one job's evidence."""
    # a span that holds the start strictly (a boundary second belongs to the segment it opens) comes first
    holding = sorted((s for s in spans if _inside(start, s)), key=lambda s: not s.start_ms <= start < s.end_ms)
    for first in holding:
        same_job = [s for s in spans if s.key[0] == first.key[0]]
        if _covered(start, end, same_job):
            return first
    return None


def check(answer: str, spans: Sequence[Span]) -> tuple[str, list[Citation], list[Citation]]:
    """(answer without unsupported citations, supported citations, unsupported citations)."""
    good: list[Citation] = []
    bad: list[Citation] = []

    def replace(m: re.Match[str]) -> str:
        start = parse_time(m.group(1))
        end = parse_time(m.group(2)) if m.group(2) else start
        if end < start:
            start, end = end, start
        span = _landing(start, end, spans)
        if span is None:
            bad.append(Citation(m.group(0), start, end, None))
            return ""
        good.append(Citation(m.group(0), start, end, span.key))
        return m.group(0)

    checked = CITATION.sub(replace, answer)
    checked = re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", checked)).strip()
    return checked, good, bad


def cite(start_ms: int, end_ms: int) -> str:
    """How the project writes a citation for a segment."""
    return f"[{clock(start_ms)}–{clock(end_ms)}]"
