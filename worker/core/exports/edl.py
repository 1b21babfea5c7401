"""``edl``: a CMX3600 cut list of highlights (or segments) at or above ``min_score``, streamed.

Record times run back to back; source times are the video's true (PTS) times as non-drop-frame
timecode at a SMPTE rate fitting the video (29.97 fps counts at 30, 15 fps at 30). With no
``min_score``, every described segment is an event.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from worker.core.exports import ExportInput, register
from worker.core.exports.text import cuts, min_score_option, one_line

DEFAULT_RATE = 25.0
SMPTE_RATES = (24, 25, 30, 48, 50, 60)


def rates(job: dict[str, Any]) -> tuple[float, int]:
    """The video's true fps and a SMPTE timecode rate for it (29.97 -> 30 NDF, 15 -> 30, 12.5 -> 25)."""
    video = job.get("video") or {}
    try:
        fps = float(video.get("fps") or DEFAULT_RATE)
    except (TypeError, ValueError):
        fps = DEFAULT_RATE
    if not 1 <= fps <= 240:
        fps = DEFAULT_RATE
    return fps, tc_rate(fps)


def tc_rate(fps: float) -> int:
    """The smallest SMPTE nominal rate that is a whole multiple of the video's (else 30 or 60)."""
    nominal = max(1, round(fps))
    for rate in SMPTE_RATES:
        if rate >= nominal and rate % nominal == 0:
            return rate
    return 30 if nominal <= 30 else 60


def tc_fps(rate: int, fps: float) -> float:
    """Frames per second of real time behind the timecode: NTSC sources count at rate*1000/1001."""
    ntsc = abs(fps * 1001 / 1000 - round(fps * 1001 / 1000)) < 0.01 and abs(fps - round(fps)) > 0.01
    return rate * 1000 / 1001 if ntsc else float(rate)


def timecode(frames: int, rate: int) -> str:
    """``HH:MM:SS:FF`` non-drop frame."""
    frames = max(0, frames)
    s, ff = divmod(frames, rate)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{ff:02d}"


def reel_of(name: str) -> str:
    """A CMX3600 reel name: up to 8 characters of A–Z, 0–9 and _ (AX when nothing is left)."""
    reel = re.sub(r"[^A-Za-z0-9_]", "", name.rsplit(".", 1)[0]).upper()[:8]
    return reel or "AX"


def _comment(text: str) -> str:
    return one_line(text, 200)


@register("edl", "text/plain; charset=utf-8", "edl")
def render(data: ExportInput) -> Iterator[str]:
    min_score = min_score_option(data.options)
    fps, rate = rates(data.job)
    per_s = tc_fps(rate, fps)
    name = str(data.job.get("source_name") or data.job.get("id") or "framescribe")
    reel = reel_of(name)
    yield f"TITLE: {_comment(name)[:70]}\nFCM: NON-DROP FRAME\n\n"
    record = 0
    for n, cut in enumerate(cuts(data.segments, min_score), start=1):
        src_in = round(cut.start_ms * per_s / 1000)
        src_out = max(src_in + 1, round(cut.end_ms * per_s / 1000))
        rec_out = record + (src_out - src_in)
        yield (
            f"{n:03d}  {reel:<8} V     C        "
            f"{timecode(src_in, rate)} {timecode(src_out, rate)} {timecode(record, rate)} {timecode(rec_out, rate)}\n"
            f"* FROM CLIP NAME: {_comment(name)}\n"
            f"* COMMENT: segment {cut.index}"
            + (f" score {cut.score:.2f}" if cut.score is not None else "")
            + f": {_comment(cut.title)}\n\n"
        )
        record = rec_out
