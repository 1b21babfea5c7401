"""Search queries and snippets as plain text: what a person typed -> a safe FTS5 query; marked snippets -> offsets."""

from __future__ import annotations

import re

from worker.errors import InputError

START, STOP = "\x02", "\x03"  # hit markers the databases put around matched words
_TERM = re.compile(r'"([^"]*)"|(\w+)', re.UNICODE)
MAX_TERMS = 16


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
