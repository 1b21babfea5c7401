"""What a person types becomes a safe FTS5 query; marked snippets become offsets."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.core.search import START, STOP, fts5_query, plain_query, split_marks, terms
from worker.errors import InputError


def test_terms_and_queries() -> None:
    assert terms('red car "parked van" NEAR(x)') == ["red", "car", "parked van", "NEAR", "x"]
    assert fts5_query("red car") == '"red" AND "car"*'
    assert fts5_query('"parked van"') == '"parked van"', "a phrase is not a prefix"
    assert plain_query('red "parked van"') == 'red "parked van"'
    with pytest.raises(InputError):
        fts5_query(" -- ?! ")


def test_split_marks_offsets_point_at_the_hits() -> None:
    text, marks = split_marks(f"…a  {START}red{STOP} \n {START}car{STOP} parks ")
    assert text == "…a red car parks"
    assert [text[a:b] for a, b in marks] == ["red", "car"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_input_is_a_valid_fts5_query_or_a_clear_error(query: str) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(a, tokenize = 'porter unicode61 remove_diacritics 2')")
    db.execute("INSERT INTO t VALUES ('a red car parks near the gate')")
    try:
        expr = fts5_query(query)
    except InputError as exc:
        assert exc.field == "q" and not terms(query)
        return
    db.execute("SELECT count(*) FROM t WHERE t MATCH ?", (expr,)).fetchone()  # never a syntax error
