"""Segment vectors and ask calls in the result store (tables of migration 0005), plus the candidate scans
retrieval needs: segments filtered by job, time range, source name glob and state, in batches."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import JSON, Column, DateTime, Integer, LargeBinary, MetaData, String, Table, Text, delete, insert, text

from worker.adapters.stores.sql import SqlResultStore
from worker.core.exports.text import to_ms
from worker.embedding import to_blob
from worker.errors import InputError

meta = MetaData()
VECTORS = Table(
    "segment_vectors", meta,
    Column("segment_id", Integer, primary_key=True), Column("job_id", String(32)), Column("embedder", String(64)),
    Column("dim", Integer), Column("text_hash", String(32)), Column("vector", LargeBinary), Column("tokens", Integer),
    Column("updated_at", DateTime(timezone=True)),
)  # fmt: skip
ASK_CALLS = Table(
    "ask_calls", meta,
    Column("id", Integer, primary_key=True, autoincrement=True), Column("created_at", DateTime(timezone=True)),
    Column("job_id", String(32)), Column("question", Text), Column("mode", String(16)), Column("model", String(64)),
    Column("input_tokens", Integer), Column("output_tokens", Integer), Column("video_tokens", Integer),
    Column("embed_tokens", Integer), Column("calls", Integer), Column("request_id", String(64)),
    Column("latency_ms", Integer), Column("answer", Text), Column("unsupported", JSON),
)  # fmt: skip
DONE = ("done", "static")


SCAN_BATCH = 5000


def _label(name: str, flag: str) -> str:
    return f"{flag}{name}" if flag else f"'{name}'"


def _time_ms(value: str | float | None, name: str, flag: str) -> int | None:
    if value is None or value == "":
        return None
    ms = to_ms(value)
    if ms is None or ms < 0:
        shown = str(value)[:40]
        raise InputError(f"{_label(name, flag)} must be seconds, MM:SS or HH:MM:SS, got {shown!r}", field=name)
    return ms


@dataclass(frozen=True, slots=True)
class Filters:
    """What narrows every search mode: one job, a time range (overlap), a source-name glob."""

    job: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    source: str | None = None

    @classmethod
    def of(
        cls,
        *,
        job: str | None = None,
        source: str | None = None,
        from_: str | float | None = None,
        to: str | float | None = None,
        flag: str = "",
    ) -> Filters:
        """The filters a request or a command line names; times are seconds or ``[HH:]MM:SS``. Raises
        InputError naming the field (``flag`` "--" for command-line options) for an unreadable or
        negative time, or a range whose end is not after its start."""
        made = cls(job or None, _time_ms(from_, "from", flag), _time_ms(to, "to", flag), source or None)
        made.check(flag)
        return made

    def check(self, flag: str = "") -> None:
        """InputError unless the range's end is after its start."""
        if self.from_ms is not None and self.to_ms is not None and self.to_ms <= self.from_ms:
            raise InputError(f"{_label('to', flag)} must be after {_label('from', flag)}", field="to")

    def sql(self, params: dict[str, Any]) -> str:
        """``AND …`` conditions on ``s`` (segments) and ``j`` (jobs); fills ``params``."""
        parts = []
        if self.job:
            parts.append("AND s.job_id = :f_job")
            params["f_job"] = self.job
        if self.from_ms is not None:
            parts.append("AND s.end_ms > :f_from")
            params["f_from"] = self.from_ms
        if self.to_ms is not None:
            parts.append("AND s.start_ms < :f_to")
            params["f_to"] = self.to_ms
        if self.source:
            parts.append("AND lower(j.source_name) LIKE :f_source ESCAPE '!'")
            params["f_source"] = glob_to_like(self.source.lower())
        return " ".join(parts)


def glob_to_like(pattern: str) -> str:
    """A shell glob (``*``, ``?``) as a LIKE pattern with ``!`` escaping; no glob chars = contains."""
    out = "".join("!" + c if c in "%_!" else "%" if c == "*" else "_" if c == "?" else c for c in pattern)
    return out if any(c in pattern for c in "*?") else f"%{out}%"


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    segment_id: int
    job_id: str
    source_name: str
    index: int
    start_ms: int
    end_ms: int
    state: str
    description: str | None
    structured: dict[str, Any]


_INFO = (
    's.id, s.job_id, j.source_name, s."index", s.start_ms, s.end_ms, s.state, s.description, s.structured '
    "FROM segments s JOIN jobs j ON j.id = s.job_id"
)


def _info(row: Any) -> SegmentInfo:
    structured = row[8]
    if isinstance(structured, str):  # SQLite JSON through text()
        import json

        try:
            structured = json.loads(structured)
        except ValueError:
            structured = {}
    return SegmentInfo(int(row[0]), row[1], row[2], int(row[3]), int(row[4]), int(row[5]), row[6], row[7],
                       dict(structured or {}) if isinstance(structured, Mapping) else {})  # fmt: skip


def _key_chunks(
    keys: Sequence[tuple[str, int]], job_col: str, index_col: str, size: int = 200
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, params)`` matching ``size`` of the segments ``(job_id, index)`` at a time (one query each)."""
    for start in range(0, len(keys), size):
        params: dict[str, Any] = {}
        conds = []
        for i, (job, idx) in enumerate(keys[start : start + size]):
            conds.append(f"({job_col} = :j{i} AND {index_col} = :i{i})")
            params[f"j{i}"], params[f"i{i}"] = job, idx
        yield " OR ".join(conds), params


class VectorStore:
    def __init__(self, store: SqlResultStore) -> None:
        self.store = store
        self.engine = store.engine

    def segments(self, filters: Filters, *, after_id: int = 0, limit: int = 500) -> list[SegmentInfo]:
        """Described segments matching ``filters`` in id order, from ``after_id`` (a page of a scan)."""
        params: dict[str, Any] = {"after": after_id, "limit": limit, "d0": DONE[0], "d1": DONE[1]}
        where = filters.sql(params)
        sql = f"SELECT {_INFO} WHERE s.id > :after AND s.state IN (:d0, :d1) {where} ORDER BY s.id LIMIT :limit"
        with self.engine.connect() as conn:
            return [_info(r) for r in conn.execute(text(sql), params).all()]

    def by_keys(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], SegmentInfo]:
        """Segments by ``(job_id, index)``."""
        found: dict[tuple[str, int], SegmentInfo] = {}
        with self.engine.connect() as conn:
            for where, params in _key_chunks(keys, "s.job_id", 's."index"'):
                for r in conn.execute(text(f"SELECT {_INFO} WHERE {where}"), params).all():
                    info = _info(r)
                    found[(info.job_id, info.index)] = info
        return found

    def thumbs(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, str]]:
        """The first frame ``(n, path)`` of each segment ``(job_id, index)`` that has frames (one query)."""
        found: dict[tuple[str, int], tuple[int, str]] = {}
        with self.engine.connect() as conn:
            for where, params in _key_chunks(keys, "f.job_id", "f.segment_index"):
                sql = f"SELECT f.job_id, f.segment_index, f.n, f.path FROM frames f WHERE {where} ORDER BY f.n"
                for job, idx, n, path in conn.execute(text(sql), params).all():
                    found.setdefault((job, int(idx)), (int(n), str(path)))
        return found

    def by_ids(self, ids: Sequence[int]) -> dict[int, SegmentInfo]:
        found: dict[int, SegmentInfo] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                params = {f"x{i}": v for i, v in enumerate(chunk)}
                marks = ", ".join(f":x{i}" for i in range(len(chunk)))
                for r in conn.execute(text(f"SELECT {_INFO} WHERE s.id IN ({marks})"), params).all():
                    found[int(r[0])] = _info(r)
        return found

    def hashes(self, segment_ids: Sequence[int], embedder: str) -> dict[int, str]:
        if not segment_ids:
            return {}
        params: dict[str, Any] = {f"x{i}": v for i, v in enumerate(segment_ids)}
        params["e"] = embedder
        marks = ", ".join(f":x{i}" for i in range(len(segment_ids)))
        sql = f"SELECT segment_id, text_hash FROM segment_vectors WHERE embedder = :e AND segment_id IN ({marks})"
        with self.engine.connect() as conn:
            return {int(a): str(b) for a, b in conn.execute(text(sql), params).all()}

    def put(self, embedder: str, rows: Sequence[tuple[int, str, str, np.ndarray, int]]) -> None:
        """Store ``(segment_id, job_id, text_hash, vector, tokens)`` rows, replacing older vectors."""
        if not rows:
            return
        ts = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(delete(VECTORS).where(VECTORS.c.segment_id.in_([r[0] for r in rows])))
            conn.execute(
                insert(VECTORS),
                [
                    {"segment_id": sid, "job_id": job, "embedder": embedder, "dim": int(vec.shape[0]),
                     "text_hash": h, "vector": to_blob(vec), "tokens": tok, "updated_at": ts}
                    for sid, job, h, vec, tok in rows
                ],
            )  # fmt: skip

    def has_any(self, embedder: str) -> bool:
        with self.engine.connect() as conn:
            sql = "SELECT 1 FROM segment_vectors WHERE embedder = :e LIMIT 1"
            return conn.execute(text(sql), {"e": embedder}).first() is not None

    def count(self, embedder: str, filters: Filters | None = None) -> int:
        params: dict[str, Any] = {"e": embedder}
        where = (filters or Filters()).sql(params)
        sql = (
            "SELECT count(*) FROM segment_vectors v JOIN segments s ON s.id = v.segment_id "
            f"JOIN jobs j ON j.id = s.job_id WHERE v.embedder = :e {where}"
        )
        with self.engine.connect() as conn:
            return int(conn.execute(text(sql), params).scalar_one())

    def scan(
        self, embedder: str, dim: int, filters: Filters, *, with_structured: bool = False, batch: int = SCAN_BATCH
    ) -> Iterator[tuple[list[int], np.ndarray, list[dict[str, Any]]]]:
        """Vectors of described segments matching ``filters``, ``batch`` at a time: (ids, matrix, structured)."""
        last = 0
        cols = "v.segment_id, v.vector" + (", s.structured" if with_structured else "")
        while True:
            params: dict[str, Any] = {
                "e": embedder,
                "dim": dim,
                "after": last,
                "limit": batch,
                "d0": DONE[0],
                "d1": DONE[1],
            }
            sql = (
                f"SELECT {cols} FROM segment_vectors v JOIN segments s ON s.id = v.segment_id "
                "JOIN jobs j ON j.id = s.job_id WHERE v.embedder = :e AND v.dim = :dim AND v.segment_id > :after "
                f"AND s.state IN (:d0, :d1) {filters.sql(params)} ORDER BY v.segment_id LIMIT :limit"
            )
            with self.engine.connect() as conn:
                rows = conn.execute(text(sql), params).all()
            if not rows:
                return
            ids = [int(r[0]) for r in rows]
            matrix = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype="<f4").reshape(len(rows), dim)
            structured = (
                [_info((0, "", "", 0, 0, 0, "", None, r[2])).structured for r in rows] if with_structured else []
            )
            yield ids, matrix, structured
            last = ids[-1]

    # -- ask calls ------------------------------------------------------------------------------
    def record_ask(self, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(ASK_CALLS).values(created_at=datetime.now(UTC), **values))

    def ask_usage(self, job_id: str) -> dict[str, int]:
        sql = (
            "SELECT coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(video_tokens), 0), "
            "coalesce(sum(calls), 0) FROM ask_calls WHERE job_id = :j"
        )
        with self.engine.connect() as conn:
            a, b, c, d = conn.execute(text(sql), {"j": job_id}).one()
        return {"input_tokens": int(a), "output_tokens": int(b), "video_tokens": int(c), "calls": int(d)}
