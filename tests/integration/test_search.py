"""Full-text search on SQLite (FTS5) and PostgreSQL (tsvector + GIN), kept in step by the database."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import text

from worker.adapters.stores.search import search
from worker.adapters.stores.sql import SqlResultStore
from worker.core.models import Description, FrameRef, SegmentPlan, VideoInfo
from worker.errors import InputError

INFO = VideoInfo(40_000, 25.0, 1000, 640, 360, "avc1", 1)


def _job(store: SqlResultStore, name: str, texts: list[tuple[str, dict[str, Any]]]) -> str:
    """A job whose segment i (10 s each) is described by texts[i], with 3 frames each."""
    job, _ = store.create_job(f"/v/{name}", name, {})
    plans = [SegmentPlan(i, i * 10_000, (i + 1) * 10_000, Fraction(1), (i * 10_000,)) for i in range(len(texts))]
    store.plan_job(job.id, INFO, plans)
    for i, (desc, structured) in enumerate(texts):
        store.claim_segment(job.id, i)
        frames = [FrameRef(n, i * 10_000 + n * 1000, f"/frames/{job.id}/{i}/{n}.jpg", 640, 352, 10) for n in (2, 1, 3)]
        store.save_segment(job.id, i, Description(desc, structured), frames)
    return job.id


def test_ranked_hits_with_times_snippets_and_thumbnails(store: SqlResultStore) -> None:
    a = _job(store, "gate.mp4", [
        ("An empty car park at night.", {}),
        ("A red car enters and a red car parks; the red car driver leaves.", {"threat_level": 1}),
        ("A blue van passes.", {}),
    ])  # fmt: skip
    b = _job(store, "lane.mp4", [("A man walks beside a red car.", {})])
    hits = search(store, "red car")
    assert [(h.job_id, h.index) for h in hits][:1] == [(a, 1)], "more matches rank first"
    assert {(h.job_id, h.index) for h in hits} == {(a, 1), (b, 0)}
    top = hits[0]
    assert (top.start_ms, top.end_ms, top.state, top.source_name) == (10_000, 20_000, "done", "gate.mp4")
    assert top.thumb_n == 1 and top.thumb_path == f"/frames/{a}/1/1.jpg", "the earliest frame is the thumbnail"
    marked = {top.snippet[s:e].lower() for s, e in top.marks}
    assert marked >= {"red", "car"} and "\x02" not in top.snippet
    assert [h.index for h in search(store, "red car", job=b)] == [0]


def test_structured_fields_are_searched(store: SqlResultStore) -> None:
    job = _job(store, "yard.mp4", [
        ("Quiet yard.", {"vehicles": ["white delivery truck"], "concerns": ["gate left open"], "threat_level": 2}),
        ("Quiet yard again.", {"people": ["courier"]}),
    ])  # fmt: skip
    assert [h.index for h in search(store, "delivery truck")] == [0]
    assert [h.index for h in search(store, "courier")] == [1]
    assert [h.index for h in search(store, "concerns gate")] == [0], "keys are words too"
    assert {h.job_id for h in search(store, "yard")} == {job}


def test_index_follows_updates_retries_and_deletes(store: SqlResultStore) -> None:
    job = _job(store, "a.mp4", [("A dog runs.", {}), ("A cat sleeps.", {})])
    assert [h.index for h in search(store, "dog")] == [0]
    store.fail_segment(job, 1, "x")  # not active: no change
    with store.engine.begin() as conn:  # a re-described segment (e.g. after a retry) replaces its text
        conn.execute(text("UPDATE segments SET description = 'A horse trots.' WHERE job_id = :j AND \"index\" = 0"),
                     {"j": job})  # fmt: skip
    assert search(store, "dog") == [] and [h.index for h in search(store, "horse")] == [0]
    store.delete_job(job)
    assert search(store, "horse") == [] and search(store, "cat") == []


def test_time_range_stemming_and_paging(store: SqlResultStore) -> None:
    _job(store, "c.mp4", [(f"Segment {i}: cars drive past the bakery.", {}) for i in range(5)])
    assert [h.index for h in search(store, "car", from_ms=15_000, to_ms=30_000)] == [1, 2], "overlap [from, to)"
    assert len(search(store, "driving cars")) == 5, "stemmed: driving ~ drive, cars ~ car"
    first = search(store, "bakery", limit=2)
    second = search(store, "bakery", limit=2, offset=2)
    assert len(first) == 2 and {h.index for h in first}.isdisjoint({h.index for h in second})


@pytest.mark.parametrize("query", ["NEAR(a b)", 'col:"x', "AND OR NOT", "a* -b ^c", "'; DROP TABLE segments; --"])
def test_hostile_queries_are_plain_words(store: SqlResultStore, query: str) -> None:
    _job(store, "d.mp4", [("A man on a bike near the drop zone.", {})])
    hits = search(store, query)  # never a syntax error, never SQL
    assert all(h.source_name == "d.mp4" for h in hits)
    assert search(store, "bike")[0].index == 0, "the table is still there"


def test_bad_requests_name_the_field(store: SqlResultStore) -> None:
    with pytest.raises(InputError) as e:
        search(store, "  ?! ")
    assert e.value.field == "q"
    with pytest.raises(InputError) as e:
        search(store, "car", from_ms=5000, to_ms=1000)
    assert e.value.field == "to"
    with pytest.raises(InputError) as e:
        search(store, "car", limit=0)
    assert e.value.field == "limit"
