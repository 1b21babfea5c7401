"""Pure parts of ask and search: citations checked against evidence, negated facts, --where, fusion, cosine."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.core.citations import Span, check, cite, parse_time
from worker.core.negation import contradicts, positive_text
from worker.core.where import infer_where, matches, parse_where
from worker.embedding import cosine_top, rrf, segment_text
from worker.errors import InputError

SPANS = [Span(10_000, 20_000, ("a", 1)), Span(20_000, 30_000, ("a", 2)), Span(60_000, 70_000, ("a", 6)),
         Span(0, 5_000, ("b", 0))]  # fmt: skip


def test_citations_inside_evidence_stay_and_others_are_removed() -> None:
    answer, good, bad = check("Van [00:12]; gone [00:15–01:05]; [05:00] later; [00:15-00:29] and [1:02–1:08].", SPANS)
    assert answer == "Van [00:12]; gone; later; [00:15-00:29] and [1:02–1:08]."
    assert [(c.text, c.key) for c in good] == [("[00:12]", ("a", 1)), ("[00:15-00:29]", ("a", 1)),
                                               ("[1:02–1:08]", ("a", 6))]  # fmt: skip
    assert [c.text for c in bad] == ["[00:15–01:05]", "[05:00]"], "a range over a gap in the evidence is unsupported"


def test_a_boundary_second_belongs_to_the_segment_it_opens() -> None:
    _, good, _ = check("[00:20–00:30]", SPANS)
    assert good[0].key == ("a", 2)


def test_times_parse_in_every_written_form() -> None:
    assert parse_time("01:23") == 83_000 and parse_time("1:02:03") == 3_723_000 and parse_time("00:05.5") == 5_500
    assert cite(83_000, 101_000) == "[01:23–01:41]"


@given(st.integers(0, 10_000), st.integers(1, 600))
def test_a_citation_made_from_a_segment_is_always_supported(start_s: int, length_s: int) -> None:
    span = Span(start_s * 1000, (start_s + length_s) * 1000, ("j", 0))
    text, good, bad = check(f"see {cite(span.start_ms, span.end_ms)}", [span])
    assert bad == [] and len(good) == 1 and text.startswith("see [")


def test_negated_facts_do_not_match() -> None:
    local = ("Bright scene; low motion; no people detected; mostly grey.", {"people": {"max": 0, "detector": "hog"}})
    assert contradicts("people", *local) and contradicts("person walking", "Nobody walking; no person.", {})
    assert not contradicts("people", "Bright scene; up to 2 people visible.", {"people": {"max": 2}})
    assert not contradicts("people", "No cars, but two people chat.", {}), "a clause break ends the negation"
    assert contradicts("vehicles", "Quiet.", {"vehicles": []})
    assert "people" not in positive_text(*local) and "grey" in positive_text(*local)
    assert "people" not in segment_text(*local), "negated facts are not embedded"


def test_where_reads_structured_facts() -> None:
    cond = parse_where(["people>=2", "threat>0"])
    assert matches(cond, {"people": ["a", "b"], "threat_level": 1})
    assert not matches(cond, {"people": {"max": 2}}), "a missing fact never matches"
    assert matches(parse_where("people>=2"), {"people": {"max": 3, "detector": "hog"}})
    assert matches(parse_where("highlight>0.8"), {"highlights": [{"score": 0.2}, {"score": 0.9}]})
    for bad in ("colour>1", "people>>2", "people>=x"):
        with pytest.raises(InputError):
            parse_where(bad)
    assert [str(c) for c in infer_where("segments with 2 or more people")] == ["people>=2"]
    assert [str(c) for c in infer_where("when were there more than one car?")] == ["vehicles>1"]
    assert infer_where("when did a van park?") == []


def test_rrf_and_exact_cosine() -> None:
    fused = rrf([["a", "b", "c"], ["c", "a"]])
    assert [k for k, _ in fused] == ["a", "c", "b"]
    m = np.eye(4, dtype=np.float32)
    q = np.array([0.1, 0.9, 0.0, 0.4], dtype=np.float32)
    assert [k for k, _ in cosine_top(q, ["w", "x", "y", "z"], m, 2)] == ["x", "z"]
