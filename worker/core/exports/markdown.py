"""``md``: a readable report: the job, its summary, then every segment with its times, streamed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from worker.core.exports import ExportInput, register
from worker.core.exports.text import DESCRIBED, score_of
from worker.core.timecode import clock, span

BADGE_KEYS = ("threat_level", "score", "highlight_score", "activity", "people", "vehicles")


def md_escape(text: str) -> str:
    """Keep model text from turning into Markdown or HTML structure."""
    out = text.replace("\\", "\\\\")
    for ch in "`*_[]<>#|":
        out = out.replace(ch, "\\" + ch)
    return " ".join(out.split())


def _badges(structured: dict[str, Any]) -> str:
    parts = []
    for key in BADGE_KEYS:
        value = structured.get(key)
        if value is None or isinstance(value, dict | list):
            continue
        parts.append(f"{key.replace('_', ' ')}: {md_escape(str(value))}")
    score = score_of(structured)
    if score is not None and "score" not in structured:
        parts.append(f"score: {score:.2f}")
    return " · ".join(parts)


def _head(job: dict[str, Any]) -> Iterator[str]:
    video = job.get("video") or {}
    usage = job.get("usage") or {}
    summary = job.get("summary") or {}
    yield f"# {md_escape(str(job.get('source_name') or job.get('id')))}\n\n"
    yield "| | |\n|---|---|\n"
    yield f"| job | `{job.get('id', '')}` |\n| state | {job.get('state', '')} |\n"
    if video:
        yield (
            f"| video | {clock(int(video.get('duration_ms') or 0))}, {video.get('width')}×{video.get('height')}, "
            f"{float(video.get('fps') or 0):g} fps |\n"
        )
    yield f"| segments | {job.get('segment_count', 0)} |\n"
    tokens = "input", "output", "video"
    yield "| tokens | " + " / ".join(f"{int(usage.get(t + '_tokens', 0))} {t}" for t in tokens) + " |\n"
    yield f"| created | {job.get('created_at', '')} |\n\n"
    if summary.get("text"):
        yield f"## Summary\n\n{md_escape(str(summary['text']))}\n\n"


@register("md", "text/markdown; charset=utf-8", "md")
def render(data: ExportInput) -> Iterator[str]:
    yield from _head(data.job)
    yield "## Segments\n\n"
    for seg in data.segments:
        start, end = int(seg["start_ms"]), int(seg["end_ms"])
        state = str(seg.get("state", ""))
        yield f"### {span(start, end)} · segment {seg['index']} · {state}\n\n"
        if state in DESCRIBED and seg.get("description"):
            yield md_escape(str(seg["description"])) + "\n\n"
        elif seg.get("error"):
            yield f"**{state}:** {md_escape(str(seg['error']))}\n\n"
        structured = seg.get("structured") or {}
        badges = _badges(structured) if isinstance(structured, dict) else ""
        if badges:
            yield f"*{badges}*\n\n"
        tokens = int(seg.get("input_tokens") or 0) + int(seg.get("output_tokens") or 0)
        if tokens or seg.get("video_tokens"):
            yield f"Tokens: {tokens} text, {int(seg.get('video_tokens') or 0)} video.\n\n"
