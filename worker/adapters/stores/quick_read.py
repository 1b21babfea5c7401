"""Read-only queries of a SQLite result store with the standard library's ``sqlite3``, for the quick
commands (``status``, ``show``, ``jobs list``): SQLAlchemy costs ~0.2 s of CPU to import, these need three
SELECTs. The queries mirror ``jobs.py`` and ``segments.py`` (tests compare both on the same store), and
they answer only for a schema at the migration heads: anything else (``NotCurrent``) goes the full way.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from worker.core.usage import usage_totals
from worker.errors import NotFound

JOB_COLUMNS = "id, state, source_name, error, summary, segment_count, created_at"


class NotCurrent(Exception):
    """The store cannot be read here (schema not at the heads, or not readable): use SQLAlchemy."""


class QuickJob:
    """The fields of ``worker.core.models.Job`` these commands print."""

    __slots__ = ("created_at", "error", "id", "segment_count", "source_name", "state", "summary")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.id, self.state, self.source_name, self.error, summary, self.segment_count, created = row
        self.summary: dict[str, Any] | None = json.loads(summary) if summary is not None else None
        self.created_at = _utc(created)


class QuickSegment:
    """The fields of ``worker.core.models.SegmentRow`` ``show`` prints."""

    __slots__ = ("description", "end_ms", "error", "start_ms", "state")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.start_ms, self.end_ms, self.state, self.description, self.error = row


def _utc(value: Any) -> datetime:
    """A SQLite DATETIME as SQLAlchemy stores it (naive text, UTC), read as ``engine.utc`` does."""
    if not isinstance(value, str):
        raise NotCurrent(f"unexpected time {value!r}")
    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


class QuickReader:
    """One SQLite connection; the schema is checked against ``heads`` before anything is read."""

    def __init__(self, path: str, heads: Iterable[str]) -> None:
        try:
            self.conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
            self.conn.execute("PRAGMA busy_timeout=30000")
            stored = {str(r[0]) for r in self.conn.execute("SELECT version_num FROM alembic_version")}
        except sqlite3.Error as exc:
            raise NotCurrent(str(exc)) from None
        if stored != set(heads):
            self.conn.close()
            raise NotCurrent("schema not at the migration heads")

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise NotCurrent(str(exc)) from None

    def get_job(self, job_id: str) -> QuickJob:
        rows = self._rows(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise NotFound(f"no job with id {job_id}")
        return QuickJob(rows[0])

    def list_jobs(self, *, state: str | None = None, limit: int = 50) -> list[QuickJob]:
        """Newest first, as ``JobsMixin.list_jobs``."""
        where, args = ("WHERE state = ? ", (state,)) if state else ("", ())
        sql = f"SELECT {JOB_COLUMNS} FROM jobs {where}ORDER BY created_at DESC, id DESC LIMIT ?"
        return [QuickJob(r) for r in self._rows(sql, (*args, limit))]

    def counts(self, job_id: str) -> dict[str, int]:
        rows = self._rows("SELECT state, count(*) FROM segments WHERE job_id = ? GROUP BY state", (job_id,))
        return {state: int(n) for state, n in rows}

    def counts_of(self, job_ids: list[str]) -> dict[str, dict[str, int]]:
        """``counts`` of several jobs in one query."""
        found: dict[str, dict[str, int]] = {job_id: {} for job_id in job_ids}
        marks = ", ".join("?" * len(job_ids))
        sql = f"SELECT job_id, state, count(*) FROM segments WHERE job_id IN ({marks}) GROUP BY job_id, state"
        for job_id, state, n in self._rows(sql, tuple(job_ids)) if job_ids else []:
            found[job_id][state] = int(n)
        return found

    def usage(self, job_id: str, summary: dict[str, Any] | None) -> dict[str, int]:
        """As ``SegmentsMixin.usage``; ``summary`` is the job's (read with it)."""
        sql = (
            "SELECT coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(video_tokens), 0),"
            " coalesce(sum(attempts), 0), coalesce(sum(http_attempts), 0) FROM segments WHERE job_id = ?"
        )
        return usage_totals(self._rows(sql, (job_id,))[0], summary)

    def segment_rows(self, job_id: str) -> list[QuickSegment]:
        sql = 'SELECT start_ms, end_ms, state, description, error FROM segments WHERE job_id = ? ORDER BY "index"'
        return [QuickSegment(r) for r in self._rows(sql, (job_id,))]

    def close(self) -> None:
        self.conn.close()
