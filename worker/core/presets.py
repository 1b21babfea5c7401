"""Presets: what a segment description looks like (free text or a JSON document), without I/O.

The JSON shapes are validated in ``worker/adapters/describers/structured.py`` (pydantic); this module
holds what the pipeline needs without it: which presets exist, the instruction that asks for the
JSON, how to find JSON in a reply, where the times are, and a readable line for a parsed document.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.core.timestamps import SegmentClock, resolve_spans

SURVEILLANCE_SCHEMA = (
    "Answer with one JSON object and nothing else, with these keys: "
    '"title" (string, a few words), "summary" (string, 1-3 sentences), '
    '"people" (list of strings, one short description per distinct person), '
    '"vehicles" (list of strings), "activity" (string), "concerns" (list of strings, empty if none), '
    '"threat_level" (integer 0-3: 0 none, 1 low, 2 elevated, 3 high), '
    '"events" (list of {"start": seconds, "end": seconds, "what": string}). '
    "Times are seconds from the first frame of this clip."
)
SPORTS_SCHEMA = (
    "Answer with one JSON object and nothing else, with these keys: "
    '"summary" (string, 1-3 sentences), '
    '"events" (play-by-play: list of {"start": seconds, "end": seconds, "what": string}), '
    '"highlights" (list of {"start": seconds, "end": seconds, "what": string, "score": number 0-1 '
    "for how much it belongs in a highlight reel}). "
    "Times are seconds from the first frame of this clip."
)


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    json_output: bool = False
    span_lists: tuple[str, ...] = ()  # keys holding lists of {start, end, ...} in model time
    schema_hint: str = ""  # appended to custom prompts so a JSON preset still gets its JSON


PRESETS: dict[str, Preset] = {
    "describe": Preset("describe"),
    "surveillance": Preset("surveillance", True, ("events",), SURVEILLANCE_SCHEMA),
    "sports": Preset("sports", True, ("events", "highlights"), SPORTS_SCHEMA),
}


def preset_for(name: str | None) -> Preset:
    return PRESETS.get(name or "describe", PRESETS["describe"])


def extract_json(text: str) -> str | None:
    """The JSON object inside a reply: strips Markdown fences and any prose around the braces."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        return None
    return body[start : end + 1]


def repair_prompt(preset: Preset, reply: str, problem: str) -> str:
    """The one follow-up asking the model to fix its malformed JSON (text only, no frames)."""
    return (
        f"Your previous answer was not valid for the required format: {problem}\n"
        f"Required format: {preset.schema_hint}\n"
        f"Previous answer:\n{reply[:6000]}\n"
        "Reply with the corrected JSON object only."
    )


def apply_times(preset: Preset, data: Mapping[str, Any], clock: SegmentClock) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Convert every span list's model times to video ms (``start_ms``/``end_ms``); returns flags."""
    out = dict(data)
    flags: set[str] = set()
    for key in preset.span_lists:
        items = out.get(key)
        if isinstance(items, list):
            out[key], found = resolve_spans([i for i in items if isinstance(i, Mapping)], clock)
            flags.update(found)
    return out, tuple(sorted(flags))


def readable_text(preset: Preset, data: Mapping[str, Any]) -> str:
    """One paragraph for lists, subtitles and summaries from a parsed document."""
    summary = str(data.get("summary") or "").strip()
    if preset.name == "surveillance":
        title = str(data.get("title") or "").strip()
        head = f"{title}: {summary}" if title and summary else title or summary
        return f"{head} (threat level {data.get('threat_level', 0)})".strip()
    if preset.name == "sports":
        highlights = data.get("highlights") or []
        best = max(
            (h for h in highlights if isinstance(h, Mapping)), key=lambda h: float(h.get("score") or 0), default=None
        )
        if best is not None and best.get("what"):
            return f"{summary} Top highlight: {best['what']}".strip()
        return summary
    return summary or json.dumps(dict(data), ensure_ascii=False)[:500]
