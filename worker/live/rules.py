"""Alert rules over a segment's structured fields (pure).

Grammar (``and`` binds tighter than ``or``; parentheses group)::

    rule    := clause (("and" | "or") clause)*
    clause  := "not" clause | "(" rule ")" | FIELD OP VALUE | FIELD "~" WORD | "keyword:" WORD
    OP      := >= <= > < == !=

``FIELD`` is a key of the structured description (``threat_level``, ``people``, ``vehicles``,
``concerns``…): a list counts its items, a number is itself, a boolean is 0/1, a string is compared as
text (only with == and !=). ``FIELD ~ WORD`` is true when WORD occurs (case-insensitive) in the field;
``keyword:WORD`` searches the description text and every string of the structured fields.
Examples: ``threat_level>=2``, ``people>=1 and vehicles==0``, ``keyword:knife or concerns>0``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.core.where import fact_number
from worker.errors import InputError

Facts = tuple[str, Mapping[str, Any]]  # (description text, structured fields)
Check = Callable[[Facts], bool]
MAX_RULE_CHARS = 500
_TOKEN = re.compile(
    r"\s*(?:(?P<op>>=|<=|==|!=|>|<|~)|(?P<paren>[()])|(?P<kw>keyword:)|(?P<str>\"[^\"]*\"|'[^']*')"
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<word>[A-Za-z_][A-Za-z0-9_.\-]*))"
)
_ALIASES = {
    "threat": "threat_level",
    "potential_threat_level": "threat_level",
    "person": "people",
    "vehicle": "vehicles",
}


@dataclass(frozen=True, slots=True)
class Rule:
    source: str
    check: Check

    def matches(self, text: str, structured: Mapping[str, Any]) -> bool:
        return self.check((text or "", structured or {}))


def _tokens(rule: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(rule):
        if rule[pos:].strip() == "":
            break
        m = _TOKEN.match(rule, pos)
        if not m or m.end() == pos:
            raise InputError(f"alert rule: cannot read '{rule[pos : pos + 20].strip()}'", field="alert")
        kind = m.lastgroup or ""
        value = m.group(kind)
        out.append((kind, value.strip("\"'") if kind == "str" else value))
        pos = m.end()
    return out


def field_value(structured: Mapping[str, Any], name: str) -> Any:
    name = _ALIASES.get(name, name)
    value = structured.get(name)
    if value is None and name == "threat_level":
        value = structured.get("potential_threat_level")
    return value


_CMP: dict[str, Callable[[Any, Any], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _compare(name: str, op: str, raw: str, is_number: bool) -> Check:
    def check(facts: Facts) -> bool:
        value = field_value(facts[1], name)
        if is_number:
            n = fact_number(value if value is not None else 0)
            return n is not None and _CMP[op](n, float(raw))
        if op not in ("==", "!="):
            return False
        return _CMP[op](str(value if value is not None else "").lower(), raw.lower())

    return check


def _contains(name: str | None, word: str) -> Check:
    needle = word.lower()

    def check(facts: Facts) -> bool:
        if name is None:
            hay = facts[0] + " " + json.dumps(facts[1], ensure_ascii=False)
        else:
            value = field_value(facts[1], name)
            hay = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return needle in hay.lower()

    return check


def _either(a: Check, b: Check) -> Check:
    return lambda f: a(f) or b(f)


def _both(a: Check, b: Check) -> Check:
    return lambda f: a(f) and b(f)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.t = tokens
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.t[self.i] if self.i < len(self.t) else ("end", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.i += 1
        return tok

    def rule(self) -> Check:
        left = self.conj()
        while self.peek() == ("word", "or"):
            self.take()
            left = _either(left, self.conj())
        return left

    def conj(self) -> Check:
        left = self.clause()
        while self.peek() == ("word", "and"):
            self.take()
            left = _both(left, self.clause())
        return left

    def clause(self) -> Check:
        kind, value = self.take()
        if (kind, value) == ("word", "not"):
            inner = self.clause()
            return lambda f: not inner(f)
        if (kind, value) == ("paren", "("):
            inner = self.rule()
            if self.take() != ("paren", ")"):
                raise InputError("alert rule: a '(' is not closed", field="alert")
            return inner
        if kind == "kw":
            word_kind, word = self.take()
            if word_kind not in ("word", "str", "num"):
                raise InputError("alert rule: keyword: needs a word", field="alert")
            return _contains(None, word)
        if kind != "word":
            raise InputError(f"alert rule: expected a field name, got '{value or 'the end'}'", field="alert")
        op_kind, op = self.take()
        if op_kind != "op":
            raise InputError(f"alert rule: expected an operator after '{value}'", field="alert")
        arg_kind, arg = self.take()
        if arg_kind not in ("num", "word", "str"):
            raise InputError(f"alert rule: expected a value after '{value} {op}'", field="alert")
        if op == "~":
            return _contains(value, arg)
        return _compare(value, op, arg, arg_kind == "num")


def parse_rule(source: str) -> Rule:
    """A compiled rule, or an InputError naming the problem."""
    if not source or not source.strip():
        raise InputError("alert rule: empty", field="alert")
    if len(source) > MAX_RULE_CHARS:
        raise InputError(f"alert rule: longer than {MAX_RULE_CHARS} characters", field="alert")
    if source.count("(") > 16 or source.count("not") > 16:
        raise InputError("alert rule: nested too deeply", field="alert")
    p = _Parser(_tokens(source))
    check = p.rule()
    if p.peek()[0] != "end":
        raise InputError(f"alert rule: unexpected '{p.peek()[1]}'", field="alert")
    return Rule(source.strip(), check)
