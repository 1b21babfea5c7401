"""``vtt``, ``srt`` and ``chapters``: each described segment as a cue at its true (PTS) times, streamed.

Hand-written over the standard library so core stays pure; tests parse the output back with webvtt-py,
srt and ffmpeg, which are the referees.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from worker.core.exports import ExportInput, register
from worker.core.exports.text import described, one_line, title_of
from worker.core.timecode import precise

_CONTROL = dict.fromkeys([*range(0x00, 0x20), *range(0x7F, 0xA0)], " ")
_SRT_MARKUP = str.maketrans({"<": "‹", ">": "›", "{": "｛", "}": "｝"})


_ARROW = re.compile(r"-[\s-]*>")  # "-->" and the spaced forms lenient parsers accept ("- >", "-- >")


def cue_lines(text: str, fmt: str) -> list[str]:
    """The one subtitle text sanitiser (SRT, VTT, chapters): model text becomes plain cue lines.

    * no blank line (it would end the cue) and no control characters;
    * no arrow (``-->``, ``- >``) survives and no line is a bare number (a cue index): a timing line
      would forge a new cue, and lenient parsers start one at "<number> newline <timestamp>";
    * markup is inert: VTT gets ``&amp; &lt; &gt;``; SRT, which has no escapes, gets look-alike
      characters for ``< > { }`` (HTML tags and ASS override blocks)."""
    out: list[str] = []
    for line in text.splitlines():
        flat = " ".join(line.translate(_CONTROL).split())
        if not flat:
            continue
        flat = _ARROW.sub("→", flat)
        if fmt == "srt":
            flat = flat.translate(_SRT_MARKUP)
        else:
            flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if out and (flat.isdigit() or out[-1].isdigit()):  # never a line of digits alone
            out[-1] = f"{out[-1]} {flat}"
        else:
            out.append(flat)
    return out


def vtt_text(text: str) -> str:
    """One line of WebVTT text (``cue_lines`` joined by spaces)."""
    return " ".join(cue_lines(text, "vtt"))


def _header(job: dict[str, Any], kind: str) -> str:
    name = one_line(str(job.get("source_name") or job.get("id") or ""), 200)
    return f"WEBVTT - {kind}\n\nNOTE framescribe job {vtt_text(str(job.get('id', '')))}: {vtt_text(name)}\n\n"


@register("vtt", "text/vtt; charset=utf-8", "vtt")
def render_vtt(data: ExportInput) -> Iterator[str]:
    yield _header(data.job, "descriptions")
    for seg in described(data.segments):
        start, end = int(seg["start_ms"]), int(seg["end_ms"])
        body = "\n".join(cue_lines(seg["description"], "vtt"))
        yield f"seg-{seg['index']}\n{precise(start)} --> {precise(end)}\n{body}\n\n"


@register("srt", "application/x-subrip; charset=utf-8", "srt")
def render_srt(data: ExportInput) -> Iterator[str]:
    for n, seg in enumerate(described(data.segments), start=1):
        start, end = int(seg["start_ms"]), int(seg["end_ms"])
        body = "\n".join(cue_lines(seg["description"], "srt"))
        yield f"{n}\n{precise(start, ',')} --> {precise(end, ',')}\n{body}\n\n"


@register("chapters", "text/vtt; charset=utf-8", "chapters.vtt")
def render_chapters(data: ExportInput) -> Iterator[str]:
    """Consecutive segments with the same title merge into one chapter; chapters never overlap."""
    yield _header(data.job, "chapters")
    current: list[Any] | None = None  # [start_ms, end_ms, title]
    n = 0
    for seg in described(data.segments):
        start, end, title = int(seg["start_ms"]), int(seg["end_ms"]), title_of(seg, 120)
        if current is not None and current[2] == title:
            current[1] = max(current[1], end)
            continue
        if current is not None:
            n += 1
            yield _chapter(n, current)
            start = max(start, current[1])  # overlapping segments: the next chapter starts where this ends
        current = [start, max(start, end), title]
    if current is not None:
        yield _chapter(n + 1, current)


def _chapter(n: int, chapter: list[Any]) -> str:
    return f"chapter-{n}\n{precise(chapter[0])} --> {precise(chapter[1])}\n{vtt_text(chapter[2])}\n\n"
