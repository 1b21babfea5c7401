"""Search queries and snippets as plain text: what a person typed -> a safe FTS5 query; marked snippets -> offsets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from worker.errors import InputError

START, STOP = "\x02", "\x03"  # hit markers the databases put around matched words
_TERM = re.compile(r'"([^"]*)"|(\w+)', re.UNICODE)
MAX_TERMS = 16
EMBED_BATCH = 10  # texts in one embedding request (DashScope text-embedding-v3/v4 take at most 10)


def terms(query: str) -> list[str]:
    """Words and "quoted phrases" of a query, in order; punctuation and operators are plain separators."""
    found: list[str] = []
    for phrase, word in _TERM.findall(query):
        text = " ".join(re.findall(r"\w+", phrase, re.UNICODE)) if phrase else word
        if text:
            found.append(text)
    return found[:MAX_TERMS]


def fts5_query(query: str) -> str:
    """An FTS5 MATCH expression where every term must appear; the last word also matches as a prefix.

    Each term is quoted, so nothing a person types is read as FTS5 syntax (AND, NEAR, column:, ``*``).

    Raises:
        InputError: the query has no word to search for.
    """
    found = terms(query)
    if not found:
        raise InputError("the search needs at least one word (letters or digits)", field="q")
    parts = ['"' + t.replace('"', '""') + '"' for t in found]
    if " " not in found[-1]:
        parts[-1] += "*"
    return " AND ".join(parts)


def plain_query(query: str) -> str:
    """The terms joined for PostgreSQL's ``websearch_to_tsquery`` (phrases kept quoted)."""
    found = terms(query)
    if not found:
        raise InputError("the search needs at least one word (letters or digits)", field="q")
    return " ".join(f'"{t}"' if " " in t else t for t in found)


def split_marks(snippet: str) -> tuple[str, list[tuple[int, int]]]:
    """Remove the hit markers and squeeze whitespace; return the text and the [start, end) offset of each hit."""
    text: list[str] = []
    marks: list[tuple[int, int]] = []
    opened: int | None = None
    for ch in snippet:
        if ch == START:
            opened = len(text)
        elif ch == STOP:
            if opened is not None and len(text) > opened:
                marks.append((opened, len(text)))
            opened = None
        elif ch.isspace():
            if text and text[-1] != " ":
                text.append(" ")
        else:
            text.append(ch)
    while text and text[-1] == " ":
        text.pop()
    return "".join(text), [(a, min(b, len(text))) for a, b in marks if a < len(text)]


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One matching segment, from any search mode: where it is, why it matched (``snippet`` with
    ``marks``, [start, end) offsets of the matched words), its ``score`` in ``mode`` (text: the
    database's rank; semantic: cosine; hybrid: fused; filter: 0) and what the segment says."""

    job_id: str
    source_name: str
    index: int
    start_ms: int
    end_ms: int
    state: str
    snippet: str
    marks: tuple[tuple[int, int], ...]
    score: float
    mode: str = "text"
    description: str | None = None
    structured: dict[str, Any] = field(default_factory=dict)
    thumb_n: int | None = None
    thumb_path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "source_name": self.source_name, "index": self.index,
            "start_ms": self.start_ms, "end_ms": self.end_ms, "state": self.state, "snippet": self.snippet,
            "marks": [list(m) for m in self.marks], "rank": round(self.score, 6), "mode": self.mode,
            "thumb_n": self.thumb_n,
        }  # fmt: skip
