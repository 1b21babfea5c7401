"""A job summary from its stored segment rows (the local fallback; no model needed)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from worker.core.models import JobSummary, SegmentRow
from worker.core.states import DESCRIBED_SEGMENT
from worker.core.timecode import clock, span

DONE_STATES = DESCRIBED_SEGMENT  # ``reused`` is a flag of a done segment, not a state


def job_state(total: int, done: int, failed: int, stopped_reason: str | None = None) -> str:
    """Terminal state from counts: all done -> done, some -> partial, none -> failed."""
    if total == 0 or done == 0:
        return "failed"
    if done == total and not stopped_reason:
        return "done"
    return "partial"


def first_sentence(text: str, limit: int = 90) -> str:
    head = text.strip().split(". ")[0].strip().rstrip(".")
    return head if len(head) <= limit else head[: limit - 1].rstrip() + "…"


def headline(title: str, limit: int = 60) -> str:
    """The gist of a chapter title: its first clause (up to ``;``), shortened."""
    head = title.split(";")[0].strip().rstrip(".,")
    return head if len(head) <= limit else head[: limit - 1].rstrip() + "…"


def sentences(text: str) -> set[str]:
    """The sentences of a description, normalised (no brackets, no final stop) for comparison."""
    return {s.strip(" ()").rstrip(".") for s in re.split(r"(?<=[.!?)])\s+", text.strip()) if s.strip(" ()")}


def build_summary(rows: Iterable[SegmentRow], duration_ms: int, stopped_reason: str | None = None) -> JobSummary:
    """Totals, chapters and a readable paragraph, streaming over the rows once."""
    total = done = failed = calls = saved = 0
    tin = tout = tvid = 0
    chapters: list[tuple[int, int, str]] = []
    common: set[str] | None = None  # sentences every described segment repeats (said once)
    failures: list[str] = []
    for row in rows:
        total += 1
        tin += row.input_tokens
        tout += row.output_tokens
        tvid += row.video_tokens
        if row.state in DONE_STATES:
            done += 1
            if row.state == "done" and row.reused_from is None and "cached" not in row.flags:
                calls += 1 if row.describer != "local" else 0
            else:
                saved += 1
            title = first_sentence(row.description or row.state)
            if chapters and chapters[-1][2] == title:
                chapters[-1] = (chapters[-1][0], row.end_ms, title)
            else:
                chapters.append((row.start_ms, row.end_ms, title))
            said = sentences(row.description or "")
            common = said if common is None else common & said
        elif row.state == "failed":
            failed += 1
            if len(failures) < 5:
                failures.append(f"{clock(row.start_ms)} ({row.error or 'unknown error'})")
    state = job_state(total, done, failed, stopped_reason)
    parts = [f"{done} of {total} segments described over {clock(duration_ms)} of video."]
    parts.extend(_outline(chapters))
    shared = sorted(common or ()) if done > 1 else []
    if shared:
        parts.append("Every segment: " + "; ".join(shared[:2]) + ".")
    if failed:
        parts.append(f"{failed} segment(s) failed: " + "; ".join(failures) + ".")
    if stopped_reason:
        parts.append(stopped_reason[0].upper() + stopped_reason[1:].rstrip(".") + ".")
    return JobSummary(
        text=" ".join(parts),
        state=state,
        segments_total=total,
        segments_done=done,
        segments_failed=failed,
        duration_ms=duration_ms,
        input_tokens=tin,
        output_tokens=tout,
        video_tokens=tvid,
        calls=calls,
        calls_saved=saved,
        chapters=tuple(chapters),
    )


def _outline(chapters: list[tuple[int, int, str]], most: int = 8) -> list[str]:
    """The parts of the video by their gist, not the segment descriptions word for word."""
    if not chapters:
        return []
    if len(chapters) == 1:
        return [f"Throughout: {headline(chapters[0][2])}."]
    shown = [f"{span(a, b)} {headline(title)}" for a, b, title in chapters[:most]]
    more = f"; … and {len(chapters) - most} more parts" if len(chapters) > most else ""
    return [f"{len(chapters)} parts: " + "; ".join(shown) + more + "."]
