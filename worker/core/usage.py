"""A job's usage as the store reports it: its segments' sums plus what its model summary spent. Shared by
the SQL store and the quick reader (``adapters/stores/quick_read.py``), which must answer the same."""

from __future__ import annotations

from typing import Any


def summary_part(summary: Any) -> dict[str, Any]:
    """What a job's model summary spent (``usage.summary`` of its stored summary: calls, requests,
    tokens); {} before one."""
    return ((summary.get("usage") or {}).get("summary") or {}) if isinstance(summary, dict) else {}


def usage_totals(sums: tuple[Any, ...], summary: Any) -> dict[str, int]:
    """A job's usage from its segments' sums (input, output, video tokens, attempts, requests) and its
    summary's own calls (a text model: money too, counted with the segments')."""
    extra = summary_part(summary)
    return {
        "input_tokens": int(sums[0]) + int(extra.get("input_tokens", 0)),
        "output_tokens": int(sums[1]) + int(extra.get("output_tokens", 0)),
        "video_tokens": int(sums[2]),
        "attempts": int(sums[3]),
        "http_attempts": int(sums[4]) + int(extra.get("http_attempts", 0)),
        "summary_input_tokens": int(extra.get("input_tokens", 0)),
        "summary_output_tokens": int(extra.get("output_tokens", 0)),
        "summary_calls": int(extra.get("calls", 0)),
    }
