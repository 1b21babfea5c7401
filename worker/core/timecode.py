"""Times: integer milliseconds inside, human formats at the edges."""

from __future__ import annotations


def clock(ms: int, *, always_hours: bool = False) -> str:
    """``MM:SS`` below an hour, ``HH:MM:SS`` from an hour on (or when asked)."""
    total_s = max(0, ms) // 1000
    h, rem = divmod(total_s, 3600)
    m, s = divmod(rem, 60)
    if h or always_hours:
        return f"{h:02d}:{m:02d}:{s:02d}"
    return f"{m:02d}:{s:02d}"


def span(start_ms: int, end_ms: int) -> str:
    hours = end_ms >= 3_600_000
    return f"{clock(start_ms, always_hours=hours)}–{clock(end_ms, always_hours=hours)}"


def precise(ms: int, sep: str = ".") -> str:
    """``HH:MM:SS.mmm`` (WebVTT) or with ``sep=','`` (SRT)."""
    ms = max(0, ms)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, milli = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{milli:03d}"
