"""Negated facts: "no people detected" must not match a search for "people" (in any search mode).

A word of a segment counts as *negated* when a negator ("no", "not", "without", "zero", …) stands at most
three words before it in the same clause; a structured field counts as negated when its value is empty,
zero or false (``people: []``, ``people.max: 0``). ``positive_text`` is what a segment affirms;
``contradicts`` tells whether a query word occurs in a segment only in negated form.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

NEGATORS = frozenset({"no", "not", "without", "zero", "none", "never", "nobody", "nothing", "0", "neither", "nor"})
CLAUSE_BREAK = frozenset({"but", "and", "while", "although", "however", "yet"})
_TOKEN = re.compile(r"\w+|[.;:!?,()]", re.UNICODE)
WINDOW = 3
# bookkeeping keys of structured fields that say nothing about the footage
SKIP_KEYS = frozenset({"detector", "frames", "start_ms", "end_ms", "start", "end", "peak_ms", "cuts_ms", "score"})


def stem(word: str) -> str:
    """A crude stem so that "cars" and "car", "parked" and "park" compare equal (query side and text side)."""
    w = word.lower()
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if len(w) > len(suffix) + 2 and w.endswith(suffix) and not w.endswith("ss"):
            return w[: -len(suffix)] + keep
    return w


def _marked(text: str) -> Iterator[tuple[str, bool]]:
    """Each word of ``text`` with whether it is negated."""
    since: int | None = None  # words since the last negator in this clause
    for tok in _TOKEN.findall(text.lower()):
        if not tok[0].isalnum() and tok != "_":
            since = None
            continue
        if tok in NEGATORS:
            since = 0
            continue
        if tok in CLAUSE_BREAK:
            since = None
            continue
        negated = since is not None and since < WINDOW
        if since is not None:
            since += 1
        yield tok, negated


def _falsy(value: Any) -> bool:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str):
        return value.strip().lower() in ("", "none", "0", "no", "false")
    if isinstance(value, list | tuple):
        return not value
    if isinstance(value, Mapping):  # {"max": 0, "mean": 0.0, ...}: negated when its count is zero
        count = value.get("max", value.get("count"))
        return count is not None and _falsy(count) if count is not None else not value
    return value is None


def field_words(structured: Mapping[str, Any], depth: int = 0) -> Iterator[tuple[str, bool]]:
    """Words of structured fields: keys (negated when the value is empty/zero) and text values."""
    if depth > 4:
        return
    for key, value in structured.items():
        if key in SKIP_KEYS:
            continue
        negated = _falsy(value)
        for word in re.findall(r"[a-z]+", str(key).lower()):
            yield word, negated
        if isinstance(value, str):
            yield from _marked(value)
        elif isinstance(value, Mapping) and not negated:
            yield from field_words(value, depth + 1)
        elif isinstance(value, list):
            for item in value[:50]:
                if isinstance(item, str):
                    yield from _marked(item)
                elif isinstance(item, Mapping):
                    yield from field_words(item, depth + 1)


def positive_words(description: str | None, structured: Mapping[str, Any] | None) -> set[str]:
    """Stems the segment affirms (description and structured fields)."""
    words = list(_marked(description or "")) + list(field_words(structured or {}))
    return {stem(w) for w, neg in words if not neg}


def negated_words(description: str | None, structured: Mapping[str, Any] | None) -> set[str]:
    words = list(_marked(description or "")) + list(field_words(structured or {}))
    return {stem(w) for w, neg in words if neg}


def positive_text(description: str | None, structured: Mapping[str, Any] | None) -> str:
    """The segment's text with negated words left out: what gets embedded for meaning-based search."""
    kept = [w for w, neg in _marked(description or "") if not neg]
    kept += [w for w, neg in field_words(structured or {}) if not neg]
    return " ".join(kept)


def contradicts(query: str, description: str | None, structured: Mapping[str, Any] | None) -> bool:
    """True when a (non-negated) word of ``query`` is present in the segment only in negated form."""
    wanted = {stem(w) for w, neg in _marked(query) if not neg}
    if not wanted:
        return False
    neg = negated_words(description, structured)
    if not neg & wanted:
        return False
    pos = positive_words(description, structured)
    return any(w in neg and w not in pos for w in wanted)
