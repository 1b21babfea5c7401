"""Helpers the text exports share: which segments carry a description, one-line titles, scores."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from worker.core.states import DESCRIBED_SEGMENT

DESCRIBED = DESCRIBED_SEGMENT  # done or static (``reused`` is a flag on a done row, not a state)
_TIME = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def described(segments: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Only segments with a description worth showing (done or static; a reused row is done)."""
    for seg in segments:
        if seg.get("state") in DESCRIBED and (seg.get("description") or "").strip():
            yield seg


def one_line(text: str, limit: int = 0) -> str:
    """Whitespace (newlines too) collapsed to single spaces; cut at ``limit`` with an ellipsis."""
    flat = " ".join(text.split())
    if limit and len(flat) > limit:
        return flat[: limit - 1].rstrip() + "…"
    return flat


def title_of(seg: dict[str, Any], limit: int = 90) -> str:
    """A short title: the structured ``title`` when the model gave one, else the first sentence."""
    structured = seg.get("structured") or {}
    title = structured.get("title") if isinstance(structured, dict) else None
    if isinstance(title, str) and title.strip():
        return one_line(title, limit)
    text = one_line(seg.get("description") or seg.get("state") or "")
    head = text.split(". ")[0].rstrip(".")
    return one_line(head, limit)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        num = float(value)
    except ValueError:
        return None
    return num if math.isfinite(num) else None


def score_of(structured: dict[str, Any] | None) -> float | None:
    """A 0–1 score from structured output: a highlight ``score`` (sports) or ``threat_level`` 0–3 (surveillance).

    Highlights inside the segment count through their best score. None when nothing scores it.
    """
    if not isinstance(structured, dict):
        return None
    best: float | None = None
    for key in ("score", "highlight_score"):
        num = _number(structured.get(key))
        if num is not None:
            best = num if best is None else max(best, num)
    level = _number(structured.get("threat_level"))
    if level is not None:
        best = max(best or 0.0, level / 3)
    for h in highlights_in(structured, 0, 2**62):
        if h.score is not None:
            best = h.score if best is None else max(best, h.score)
    return None if best is None else min(1.0, max(0.0, best))


MAX_TIME_MS = 10**11  # ~3 years: any time beyond is an input error, not an overflow deeper down


def to_ms(value: Any) -> int | None:
    """A time the describer or a query gave: seconds (number), ``MM:SS[.mmm]`` / ``HH:MM:SS[.mmm]``; None if
    unreadable or beyond ``MAX_TIME_MS`` either way."""
    ms: int | None = None
    num = _number(value) if not isinstance(value, str) or ":" not in value else None
    if num is not None:
        ms = round(num * 1000) if abs(num) <= MAX_TIME_MS / 1000 else None
    elif isinstance(value, str):
        m = _TIME.match(value.strip())
        if m:
            h, mm, ss = m.groups()
            total = (int(h or 0) * 60 + int(mm)) * 60 + float(ss)
            ms = round(total * 1000) if total <= MAX_TIME_MS / 1000 else None
    return ms


@dataclass(frozen=True, slots=True)
class Cut:
    """A stretch of the source an editor may want: a highlight, or a whole segment."""

    start_ms: int
    end_ms: int
    title: str
    score: float | None
    index: int


def highlights_in(structured: dict[str, Any], start_ms: int, end_ms: int, index: int = -1) -> Iterator[Cut]:
    """The ``highlights`` list of structured output, clamped to the segment, in video times."""
    items = structured.get("highlights") if isinstance(structured, dict) else None
    if not isinstance(items, list):
        return
    for item in items:
        if not isinstance(item, dict):
            continue
        a = item.get("start_ms") if isinstance(item.get("start_ms"), int) else to_ms(item.get("start"))
        b = item.get("end_ms") if isinstance(item.get("end_ms"), int) else to_ms(item.get("end"))
        if a is None or b is None:
            continue
        a, b = max(start_ms, min(a, end_ms)), max(start_ms, min(b, end_ms))
        if b <= a:
            continue
        label = item.get("what") or item.get("title") or item.get("description") or "highlight"
        score = _number(item.get("score"))
        yield Cut(a, b, one_line(str(label), 90), None if score is None else min(1.0, max(0.0, score)), index)


def cuts(segments: Iterable[dict[str, Any]], min_score: float | None) -> Iterator[Cut]:
    """What a cut list holds, streaming: highlights at or above ``min_score`` where the describer gave any,
    else whole segments whose score reaches it; with ``min_score`` None, every described segment.
    """
    for seg in described(segments):
        start, end, index = int(seg["start_ms"]), int(seg["end_ms"]), int(seg["index"])
        structured = seg.get("structured") or {}
        found = list(highlights_in(structured, start, end, index))
        if found:
            yield from (c for c in found if min_score is None or (c.score or 0.0) >= min_score)
            continue
        score = score_of(structured)
        if min_score is None or (score is not None and score >= min_score):
            yield Cut(start, end, title_of(seg), score, index)


def min_score_option(options: dict[str, str]) -> float | None:
    """The ``min_score`` export option (0–1); absent means every described segment."""
    from worker.errors import InputError

    raw = options.get("min_score")
    if raw is None or raw == "":
        return None
    num = _number(raw)
    if num is None or not 0 <= num <= 1:
        raise InputError(f"min_score must be a number from 0 to 1, got '{raw}'", field="min_score")
    return num
