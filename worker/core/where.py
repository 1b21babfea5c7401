"""Structured filters (``--where people>=2``) over the facts presets and the local describer store.

Facts are read from a segment's structured fields, never from prose:
``people`` (surveillance: the list's length; local describer: most people seen in one frame),
``vehicles`` (surveillance list length), ``threat`` / ``threat_level`` (surveillance 0-3),
``highlight`` (sports: the best highlight score 0-1), ``motion`` (local: motion score 0-1),
``concerns`` / ``events`` (list lengths). A segment without the fact never matches.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.errors import InputError

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "!=": operator.ne, "==": operator.eq, "=": operator.eq,
    ">": operator.gt, "<": operator.lt,
}  # fmt: skip
_EXPR = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|!=|==|=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
MAX_FILTERS = 8


def fact_number(value: Any) -> float | None:
    """A structured fact as a number: a count, a list's length, a mapping's max/count/score, a numeric string."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return float(len(value))
    if isinstance(value, Mapping):
        inner = value.get("max", value.get("count", value.get("score")))
        return fact_number(inner) if inner is not None else None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _highlight(s: Mapping[str, Any]) -> float | None:
    items = s.get("highlights")
    if not isinstance(items, list):
        return None
    scores = [fact_number(h.get("score")) for h in items if isinstance(h, Mapping)]
    found = [x for x in scores if x is not None]
    return max(found, default=0.0)


def _motion(s: Mapping[str, Any]) -> float | None:
    m = s.get("motion")
    return fact_number(m.get("score")) if isinstance(m, Mapping) else None


FACTS: dict[str, Callable[[Mapping[str, Any]], float | None]] = {
    "people": lambda s: fact_number(s.get("people")),
    "vehicles": lambda s: fact_number(s.get("vehicles")),
    "threat": lambda s: fact_number(s.get("threat_level")),
    "threat_level": lambda s: fact_number(s.get("threat_level")),
    "highlight": _highlight,
    "motion": _motion,
    "concerns": lambda s: fact_number(s.get("concerns")),
    "events": lambda s: fact_number(s.get("events")),
}


@dataclass(frozen=True, slots=True)
class Condition:
    fact: str
    op: str
    value: float

    def test(self, structured: Mapping[str, Any]) -> bool:
        got = FACTS[self.fact](structured)
        return got is not None and _OPS[self.op](got, self.value)

    def __str__(self) -> str:
        return f"{self.fact}{self.op}{self.value:g}"


def parse_where(exprs: Sequence[str] | str | None) -> list[Condition]:
    """``["people>=2", "threat>0"]`` (or one comma-separated string) -> conditions; InputError when malformed."""
    if not exprs:
        return []
    items = [exprs] if isinstance(exprs, str) else list(exprs)
    parts = [p for item in items for p in str(item).split(",") if p.strip()]
    if len(parts) > MAX_FILTERS:
        raise InputError(f"at most {MAX_FILTERS} --where conditions", field="where")
    out = []
    for part in parts:
        m = _EXPR.match(part.lower())
        if not m:
            raise InputError(
                f"cannot read the filter {part.strip()[:60]!r}: write FACT OP NUMBER, e.g. people>=2", field="where"
            )
        if m.group(1) not in FACTS:
            raise InputError(
                f"unknown fact {m.group(1)!r} in --where; known: {', '.join(sorted(FACTS))}", field="where"
            )
        out.append(Condition(m.group(1), m.group(2), float(m.group(3))))
    return out


def matches(conditions: Sequence[Condition], structured: Mapping[str, Any] | None) -> bool:
    return all(c.test(structured or {}) for c in conditions)


_NUM = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
_NOUNS = {"people": "people", "persons": "people", "person": "people", "vehicles": "vehicles", "vehicle": "vehicles",
          "cars": "vehicles", "car": "vehicles"}  # fmt: skip
_PHRASES = (
    (re.compile(r"\b(\d+|" + "|".join(_NUM) + r")\s+or\s+more\s+(\w+)"), ">="),
    (re.compile(r"\bat\s+least\s+(\d+|" + "|".join(_NUM) + r")\s+(\w+)"), ">="),
    (re.compile(r"\bmore\s+than\s+(\d+|" + "|".join(_NUM) + r")\s+(\w+)"), ">"),
    (re.compile(r"\b(?:fewer|less)\s+than\s+(\d+|" + "|".join(_NUM) + r")\s+(\w+)"), "<"),
)


def infer_where(question: str) -> list[Condition]:
    """Conditions a question states in words: "2 or more people", "more than one vehicle", "threat level 2"."""
    q = question.lower()
    found: list[Condition] = []
    for rx, op in _PHRASES:
        for num, noun in rx.findall(q):
            fact = _NOUNS.get(noun)
            if fact:
                found.append(Condition(fact, op, float(_NUM.get(num) or int(num))))
    m = re.search(r"\bthreat(?:\s+level)?\s*(?:of\s+|>=\s*|at\s+least\s+)?(\d)\b", q)
    if m:
        found.append(Condition("threat", ">=", float(m.group(1))))
    return found[:MAX_FILTERS]
