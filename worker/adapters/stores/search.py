"""Full-text search over stored segments: SQLite FTS5 on the embedded default, PostgreSQL tsvector + GIN.

The index is kept by the database itself (triggers / a generated column, migration 0003), so nothing
here writes to it; ``search`` ranks hits and returns them with times, a snippet and a thumbnail frame.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from worker.adapters.stores.sql import SqlResultStore
from worker.adapters.stores.vectors import Filters
from worker.core.search import SearchHit, fts5_query, plain_query, split_marks
from worker.errors import InputError

MAX_LIMIT = 200


_THUMB = (
    '(SELECT min(f.n) FROM frames f WHERE f.job_id = s.job_id AND f.segment_index = s."index") AS thumb_n, '
    '(SELECT f.path FROM frames f WHERE f.job_id = s.job_id AND f.segment_index = s."index" '
    "ORDER BY f.n LIMIT 1) AS thumb_path"
)
_COLS = 's.job_id, j.source_name, s."index", s.start_ms, s.end_ms, s.state'

SQLITE = (
    f"SELECT {_COLS}, snippet(segments_fts, 0, char(2), char(3), '…', 24) AS snip, "
    "snippet(segments_fts, 1, char(2), char(3), '…', 16) AS snip_fields, "
    f"bm25(segments_fts, 2.0, 1.0) AS score, {_THUMB} "
    "FROM segments_fts JOIN segments s ON s.id = segments_fts.rowid JOIN jobs j ON j.id = s.job_id "
    'WHERE segments_fts MATCH :q {where} ORDER BY score, s.job_id, s."index" LIMIT :limit OFFSET :offset'
)
POSTGRES = (
    f"SELECT {_COLS}, ts_headline('english', coalesce(s.description, ''), q.query, "
    "'StartSel=\"' || chr(2) || '\", StopSel=\"' || chr(3) || '\", MaxWords=30, MinWords=12, "
    'MaxFragments=2, FragmentDelimiter=" … "\') AS snip, '
    f"-ts_rank_cd(s.search_tsv, q.query) AS score, {_THUMB} "
    "FROM segments s JOIN jobs j ON j.id = s.job_id, websearch_to_tsquery('english', :q) AS q(query) "
    'WHERE s.search_tsv @@ q.query {where} ORDER BY score, s.job_id, s."index" LIMIT :limit OFFSET :offset'
)


def search(
    store: SqlResultStore,
    q: str,
    *,
    job: str | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
    source: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> list[SearchHit]:
    """Segments matching every word of ``q``, best first; ``job``, the time range and ``source`` (a name
    glob) narrow them.

    A segment is in range when it overlaps [from_ms, to_ms). Raises InputError for an empty query,
    a bad range or limit.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InputError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    if offset < 0:
        raise InputError("offset cannot be negative", field="offset")
    filters = Filters(job=job, from_ms=from_ms, to_ms=to_ms, source=source)
    filters.check()
    dialect = store.engine.dialect.name
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    params["q"] = fts5_query(q) if dialect == "sqlite" else plain_query(q)
    where = filters.sql(params)
    sql = (SQLITE if dialect == "sqlite" else POSTGRES).format(where=where)
    with store.engine.connect() as conn:
        rows = conn.execute(text(sql), params).all()
    return [_hit(row) for row in rows]


def _hit(row: Any) -> SearchHit:
    m = row._mapping
    snippet, marks = split_marks(str(m["snip"] or ""))
    if not marks and m.get("snip_fields"):  # the words matched only structured fields: show those
        snippet, marks = split_marks(str(m["snip_fields"]))
    return SearchHit(
        job_id=m["job_id"],
        source_name=m["source_name"],
        index=int(m["index"]),
        start_ms=int(m["start_ms"]),
        end_ms=int(m["end_ms"]),
        state=m["state"],
        snippet=snippet,
        marks=tuple(marks),
        score=round(-float(m["score"]), 6),
        thumb_n=None if m["thumb_n"] is None else int(m["thumb_n"]),
        thumb_path=m["thumb_path"],
    )


__all__ = ["SearchHit", "search"]
