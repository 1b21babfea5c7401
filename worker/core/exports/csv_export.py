"""``csv``: one row per segment (every state), streamed; every text cell is defused against formulas."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from worker.core.exports import ExportInput, register
from worker.core.timecode import precise

COLUMNS = (
    "job_id", "index", "start_ms", "end_ms", "start", "end", "state", "description", "structured",
    "input_tokens", "output_tokens", "video_tokens", "frame_count", "describer", "model", "error",
)  # fmt: skip
_FORMULA = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20", "|", "%")


def safe_cell(value: Any) -> Any:
    """A cell a spreadsheet will not run as a formula (OWASP CSV injection): text starting (after any
    leading whitespace) with ``= + - @``, their fullwidth forms, a tab or a line break gets a ``'``.
    Numbers stay numbers; every other value is made text first."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.lstrip(" \u3000\xa0").startswith(_FORMULA) or text.startswith(_FORMULA) else text


def _row(job_id: str, seg: dict[str, Any]) -> list[Any]:
    structured = seg.get("structured") or {}
    return [
        safe_cell(v)
        for v in [
            job_id,
            seg["index"],
            seg["start_ms"],
            seg["end_ms"],
            precise(int(seg["start_ms"])),
            precise(int(seg["end_ms"])),
            seg.get("state", ""),
            seg.get("description"),
            json.dumps(structured, ensure_ascii=False, sort_keys=True, default=str) if structured else "",
            seg.get("input_tokens", 0),
            seg.get("output_tokens", 0),
            seg.get("video_tokens", 0),
            seg.get("frame_count", 0),
            seg.get("describer") or "",
            seg.get("model") or "",
            seg.get("error"),
        ]
    ]


@register("csv", "text/csv; charset=utf-8", "csv")
def render(data: ExportInput) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    job_id = str(data.job.get("id", ""))
    for seg in data.segments:
        writer.writerow(_row(job_id, seg))
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()
