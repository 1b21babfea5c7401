"""ResultStore on SQLAlchemy: SQLite (WAL) by default, PostgreSQL in production; same code, same migrations."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, create_engine, delete, event, exists, func, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from worker.adapters.stores.schema import FrameDbRow, JobRow, SegmentDbRow
from worker.adapters.stores.schema_version import at_heads
from worker.core.models import Description, FrameRef, JobSummary, SegmentPlan, SegmentRow, Usage, VideoInfo
from worker.core.models import Job as Job  # re-exported: the store's callers import it from here
from worker.core.states import ACTIVE_SEGMENT
from worker.core.states import TERMINAL_JOB as TERMINAL_JOB  # re-exported
from worker.errors import NotFound, StoreError

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent.parent.parent / "migrations"
ACTIVE = ACTIVE_SEGMENT


def now() -> datetime:
    return datetime.now(UTC)


def _job(row: JobRow) -> Job:
    return Job(
        row.id,
        row.state,
        row.source,
        row.source_name,
        dict(row.options or {}),
        row.video,
        row.segment_count,
        row.error,
        row.summary,
        _utc(row.created_at),
        _utc(row.updated_at),
        _utc(row.finished_at) if row.finished_at else None,
        row.schedule_id,
        row.webhook_url,
        row.idempotency_key,
    )


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _segment(row: SegmentDbRow) -> SegmentRow:
    return SegmentRow(
        index=row.index,
        start_ms=row.start_ms,
        end_ms=row.end_ms,
        state=row.state,
        description=row.description,
        structured=dict(row.structured or {}),
        frame_count=row.frame_count,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        video_tokens=row.video_tokens,
        error=row.error,
        describer=row.describer,
        model=row.model,
        reused_from=row.reused_from,
        attempts=row.attempts,
        latency_ms=row.latency_ms,
        request_id=row.request_id,
        fps=row.fps,
        flags=tuple(row.flags or ()),
        http_attempts=row.http_attempts or 0,
    )


def build_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and url.count("///"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def migrate(engine: Engine) -> None:
    """Bring the schema to every head. On PostgreSQL an advisory lock keeps concurrent workers in line."""
    if at_heads(engine, MIGRATIONS / "versions"):  # nothing to do: Alembic (≈ 0.25 s to import) stays unloaded
        return
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(74219)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")  # independent branches (e.g. search, schedules) all apply


class SqlResultStore:
    """All reads and writes of jobs, segments and frames. One transaction per write."""

    def __init__(self, url: str, *, auto_migrate: bool = True) -> None:
        self.url = url
        self.engine = build_engine(url)
        if auto_migrate:
            try:
                migrate(self.engine)
            except OperationalError as exc:
                raise StoreError(f"cannot open the result store at {self.safe_url}: {exc.orig}") from None
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def session(self) -> Session:
        return self._session()

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True

    # -- jobs ---------------------------------------------------------------------------------
    def create_job(
        self,
        source: str,
        source_name: str,
        options: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        schedule_id: str | None = None,
        webhook_url: str | None = None,
        state: str = "queued",
    ) -> tuple[Job, bool]:
        """Insert a job; with an idempotency key seen before, return the first job and False."""
        if idempotency_key:
            found = self.job_by_key(idempotency_key)
            if found:
                return found, False
        ts = now()
        row = JobRow(
            id=uuid.uuid4().hex,
            created_at=ts,
            updated_at=ts,
            state=state,
            source=source,
            source_name=source_name[:512],
            options=options,
            segment_count=0,
            summary_state="none",
            idempotency_key=idempotency_key,
            schedule_id=schedule_id,
            webhook_url=webhook_url,
        )
        try:
            with self.session() as s, s.begin():
                s.add(row)
        except IntegrityError:
            found = self.job_by_key(idempotency_key or "")
            if found:
                return found, False
            raise
        return _job(row), True

    def job_by_key(self, key: str) -> Job | None:
        with self.session() as s:
            row = s.scalar(select(JobRow).where(JobRow.idempotency_key == key))
            return _job(row) if row else None

    def get_job(self, job_id: str) -> Job:
        with self.session() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"no job with id {job_id}")
            return _job(row)

    def list_jobs(
        self,
        *,
        state: str | None = None,
        schedule_id: str | None = None,
        source: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Job]:
        """Newest first; ``before`` is a cursor (a job id) for the next page."""
        q = select(JobRow)
        if state:
            q = q.where(JobRow.state == state)
        if schedule_id:
            q = q.where(JobRow.schedule_id == schedule_id)
        if source:
            q = q.where(JobRow.source_name.contains(source))
        with self.session() as s:
            if before:
                ref = s.get(JobRow, before)
                if ref is not None:
                    q = q.where(
                        (JobRow.created_at < ref.created_at)
                        | and_(JobRow.created_at == ref.created_at, JobRow.id < ref.id)
                    )
            rows = s.scalars(q.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)).all()
            return [_job(r) for r in rows]

    def set_job_state(
        self, job_id: str, state: str, error: str | None = None, *, only_from: Sequence[str] = ()
    ) -> bool:
        values: dict[str, Any] = {"state": state, "updated_at": now()}
        if error is not None:
            values["error"] = error[:4000]
        if state in TERMINAL_JOB:
            values["finished_at"] = now()
        q = update(JobRow).where(JobRow.id == job_id)
        if only_from:
            q = q.where(JobRow.state.in_(only_from))
        with self.session() as s, s.begin():
            return bool(s.execute(q.values(**values)).rowcount)  # type: ignore[attr-defined]

    def plan_job(self, job_id: str, video: VideoInfo, plans: Sequence[SegmentPlan]) -> None:
        """Record the video facts and one pending row per planned segment (idempotent)."""
        ts = now()
        with self.session() as s, s.begin():
            have = set(s.scalars(select(SegmentDbRow.index).where(SegmentDbRow.job_id == job_id)))
            for p in plans:
                if p.index in have:
                    continue
                s.add(
                    SegmentDbRow(
                        job_id=job_id,
                        index=p.index,
                        start_ms=p.start_ms,
                        end_ms=p.end_ms,
                        fps=str(p.fps),
                        kind=p.kind,
                        planned_frames=p.frame_count,
                        state="pending",
                        input_tokens=0,
                        output_tokens=0,
                        video_tokens=0,
                        latency_ms=0,
                        attempts=0,
                        frame_count=0,
                        updated_at=ts,
                    )
                )
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(video=video.as_dict(), segment_count=len(have | {p.index for p in plans}), updated_at=ts)
            )

    # -- segments -----------------------------------------------------------------------------
    def claim_segment(self, job_id: str, index: int) -> bool:
        """pending|failed|running -> running, attempts + 1. False when done, static or cancelled."""
        with self.session() as s, s.begin():
            res = s.execute(
                update(SegmentDbRow)
                .where(
                    SegmentDbRow.job_id == job_id,
                    SegmentDbRow.index == index,
                    SegmentDbRow.state.in_(("pending", "running", "failed")),
                )
                .values(state="running", attempts=SegmentDbRow.attempts + 1, updated_at=now())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def save_segment(
        self,
        job_id: str,
        index: int,
        desc: Description,
        frames: Sequence[FrameRef],
        *,
        state: str = "done",
        reused_from: int | None = None,
    ) -> bool:
        """Store a described segment and its frames in one transaction; the first writer wins."""
        u = desc.usage
        with self.session() as s, s.begin():
            res = s.execute(
                update(SegmentDbRow)
                .where(
                    SegmentDbRow.job_id == job_id,
                    SegmentDbRow.index == index,
                    SegmentDbRow.state.in_(ACTIVE),  # only a claimed (or just planned) row; never over failed/done
                )
                .values(
                    state=state,
                    description=desc.text,
                    structured=desc.structured,
                    describer=desc.describer,
                    model=desc.model,
                    # added: tokens an earlier failed attempt was billed for stay counted
                    input_tokens=SegmentDbRow.input_tokens + u.input_tokens,
                    output_tokens=SegmentDbRow.output_tokens + u.output_tokens,
                    video_tokens=SegmentDbRow.video_tokens + u.video_tokens,
                    http_attempts=SegmentDbRow.http_attempts + u.http_attempts,
                    request_id=u.request_id,
                    latency_ms=u.latency_ms,
                    error=None,
                    frame_count=len(frames),
                    reused_from=reused_from,
                    flags=list(desc.flags),
                    updated_at=now(),
                )
            )
            if not res.rowcount:  # type: ignore[attr-defined]
                return False
            s.execute(delete(FrameDbRow).where(FrameDbRow.job_id == job_id, FrameDbRow.segment_index == index))
            s.add_all(
                FrameDbRow(
                    job_id=job_id,
                    segment_index=index,
                    n=f.n,
                    t_ms=f.t_ms,
                    path=f.path,
                    width=f.width,
                    height=f.height,
                    size_bytes=f.size_bytes,
                )
                for f in frames
            )
        return True

    def fail_segment(self, job_id: str, index: int, error: str, spent: Usage | None = None) -> bool:
        """``spent``: what the failed calls cost (requests sent, tokens of replies lost after sending)."""
        more: dict[str, Any] = {}
        if spent is not None:
            more = {
                "input_tokens": SegmentDbRow.input_tokens + spent.input_tokens,
                "output_tokens": SegmentDbRow.output_tokens + spent.output_tokens,
                "video_tokens": SegmentDbRow.video_tokens + spent.video_tokens,
                "http_attempts": SegmentDbRow.http_attempts + spent.http_attempts,
            }
        with self.session() as s, s.begin():
            res = s.execute(
                update(SegmentDbRow)
                .where(
                    SegmentDbRow.job_id == job_id,
                    SegmentDbRow.index == index,
                    SegmentDbRow.state.in_(ACTIVE),
                )
                .values(state="failed", error=error[:4000], updated_at=now(), **more)
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def add_spent(self, job_id: str, index: int, spent: Usage) -> None:
        """Add what failed requests cost to a segment that will be tried again (a Celery retry)."""
        with self.session() as s, s.begin():
            s.execute(
                update(SegmentDbRow)
                .where(SegmentDbRow.job_id == job_id, SegmentDbRow.index == index)
                .values(
                    input_tokens=SegmentDbRow.input_tokens + spent.input_tokens,
                    output_tokens=SegmentDbRow.output_tokens + spent.output_tokens,
                    video_tokens=SegmentDbRow.video_tokens + spent.video_tokens,
                    http_attempts=SegmentDbRow.http_attempts + spent.http_attempts,
                )
            )

    def segment_state(self, job_id: str, index: int) -> str | None:
        with self.session() as s:
            return s.scalar(
                select(SegmentDbRow.state).where(SegmentDbRow.job_id == job_id, SegmentDbRow.index == index)
            )

    def segment_rows(self, job_id: str, *, batch: int = 500) -> Iterator[SegmentRow]:
        """Stream the job's segments in order, ``batch`` rows at a time (flat memory for long jobs)."""
        last = -1
        while True:
            with self.session() as s:
                rows = s.scalars(
                    select(SegmentDbRow)
                    .where(SegmentDbRow.job_id == job_id, SegmentDbRow.index > last)
                    .order_by(SegmentDbRow.index)
                    .limit(batch)
                ).all()
            if not rows:
                return
            for r in rows:
                yield _segment(r)
            last = rows[-1].index

    def segment(self, job_id: str, index: int) -> SegmentRow:
        with self.session() as s:
            row = s.scalar(select(SegmentDbRow).where(SegmentDbRow.job_id == job_id, SegmentDbRow.index == index))
            if row is None:
                raise NotFound(f"job {job_id} has no segment {index}")
            return _segment(row)

    def frames(self, job_id: str, index: int) -> list[FrameRef]:
        with self.session() as s:
            rows = s.scalars(
                select(FrameDbRow)
                .where(FrameDbRow.job_id == job_id, FrameDbRow.segment_index == index)
                .order_by(FrameDbRow.n)
            ).all()
            return [FrameRef(r.n, r.t_ms, r.path, r.width, r.height, r.size_bytes) for r in rows]

    def counts(self, job_id: str) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(
                select(SegmentDbRow.state, func.count())
                .where(SegmentDbRow.job_id == job_id)
                .group_by(SegmentDbRow.state)
            ).all()
            return {state: int(n) for state, n in rows}

    def usage(self, job_id: str) -> dict[str, int]:
        with self.session() as s:
            row = s.execute(
                select(
                    func.coalesce(func.sum(SegmentDbRow.input_tokens), 0),
                    func.coalesce(func.sum(SegmentDbRow.output_tokens), 0),
                    func.coalesce(func.sum(SegmentDbRow.video_tokens), 0),
                    func.coalesce(func.sum(SegmentDbRow.attempts), 0),
                    func.coalesce(func.sum(SegmentDbRow.http_attempts), 0),
                ).where(SegmentDbRow.job_id == job_id)
            ).one()
            summary = s.scalar(select(JobRow.summary).where(JobRow.id == job_id)) or {}
        # the summary's own calls (a text model) are money too: counted with the segments'
        extra = ((summary.get("usage") or {}).get("summary") or {}) if isinstance(summary, dict) else {}
        return {
            "input_tokens": int(row[0]) + int(extra.get("input_tokens", 0)),
            "output_tokens": int(row[1]) + int(extra.get("output_tokens", 0)),
            "video_tokens": int(row[2]),
            "attempts": int(row[3]),
            "http_attempts": int(row[4]) + int(extra.get("http_attempts", 0)),
            "summary_input_tokens": int(extra.get("input_tokens", 0)),
            "summary_output_tokens": int(extra.get("output_tokens", 0)),
            "summary_calls": int(extra.get("calls", 0)),
        }

    # -- finishing ----------------------------------------------------------------------------
    def claim_summary(self, job_id: str) -> bool:
        """Atomically claim the right to summarise: only once, and only when no segment is active."""
        active = exists().where(SegmentDbRow.job_id == job_id, SegmentDbRow.state.in_(ACTIVE))
        with self.session() as s, s.begin():
            res = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.summary_state == "none", ~active)
                .values(summary_state="claimed", updated_at=now())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def finish_job(self, job_id: str, summary: JobSummary, state: str, error: str | None = None) -> None:
        with self.session() as s, s.begin():
            values: dict[str, Any] = {
                "summary": summary.as_dict(),
                "summary_state": "done",
                "updated_at": now(),
                "finished_at": now(),
            }
            if error is not None:
                values["error"] = error[:4000]
            s.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.state != "cancelled").values(state=state, **values)
            )
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.state == "cancelled").values(**values))

    def cancel_job(self, job_id: str) -> int:
        """Cancel queued/running segments (finished ones stay); returns how many were cancelled."""
        self.get_job(job_id)
        with self.session() as s, s.begin():
            res = s.execute(
                update(SegmentDbRow)
                .where(SegmentDbRow.job_id == job_id, SegmentDbRow.state.in_(ACTIVE))
                .values(state="cancelled", updated_at=now())
            )
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.state.not_in(TERMINAL_JOB))
                .values(state="cancelled", updated_at=now(), finished_at=now())
            )
            return int(res.rowcount)  # type: ignore[attr-defined]

    def reset_failed(self, job_id: str) -> list[int]:
        """Failed (and cancelled) segments back to pending for a retry; reopens the job's summary."""
        with self.session() as s, s.begin():
            idx = list(
                s.scalars(
                    select(SegmentDbRow.index).where(
                        SegmentDbRow.job_id == job_id, SegmentDbRow.state.in_(("failed", "cancelled"))
                    )
                )
            )
            if idx:
                s.execute(
                    update(SegmentDbRow)
                    .where(SegmentDbRow.job_id == job_id, SegmentDbRow.index.in_(idx))
                    .values(state="pending", error=None, updated_at=now())
                )
                s.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id)
                    .values(state="queued", summary_state="none", error=None, finished_at=None, updated_at=now())
                )
            return idx

    def cancel_remaining(self, job_id: str, reason: str, *, only_if_cancelled: bool = False) -> int:
        """Segments not yet finished end as cancelled with ``reason`` (a budget cap or a fatal error).

        ``only_if_cancelled`` makes it conditional, in the same statement, on the job still being
        cancelled: a stale task that saw the cancel must not undo a retry that came after it."""
        q = update(SegmentDbRow).where(SegmentDbRow.job_id == job_id, SegmentDbRow.state.in_(ACTIVE))
        if only_if_cancelled:
            q = q.where(exists().where(JobRow.id == job_id, JobRow.state == "cancelled"))
        with self.session() as s, s.begin():
            res = s.execute(q.values(state="cancelled", error=reason[:4000], updated_at=now()))
            return int(res.rowcount)  # type: ignore[attr-defined]

    def delete_job(self, job_id: str) -> None:
        self.get_job(job_id)
        with self.session() as s, s.begin():
            s.execute(delete(FrameDbRow).where(FrameDbRow.job_id == job_id))
            s.execute(delete(SegmentDbRow).where(SegmentDbRow.job_id == job_id))
            s.execute(delete(JobRow).where(JobRow.id == job_id))

    def close(self) -> None:
        self.engine.dispose()

    # -- recovery (the Celery reaper) ---------------------------------------------------------
    def stale_segments(self, older_than: datetime, *, limit: int = 500) -> list[tuple[str, int, str]]:
        """``(job_id, index, state)`` of pending/running segments of live jobs untouched since ``older_than``."""
        with self.session() as s:
            rows = s.execute(
                select(SegmentDbRow.job_id, SegmentDbRow.index, SegmentDbRow.state)
                .join(JobRow, JobRow.id == SegmentDbRow.job_id)
                .where(
                    SegmentDbRow.state.in_(ACTIVE),
                    SegmentDbRow.updated_at < older_than,
                    JobRow.state.in_(("queued", "running")),
                )
                .order_by(SegmentDbRow.updated_at)
                .limit(limit)
            ).all()
        return [(str(j), int(i), str(st)) for j, i, st in rows]

    def stale_jobs(self, older_than: datetime, *, limit: int = 500) -> list[tuple[str, str]]:
        """Live jobs a lost message left behind, as ``(job_id, need)``: ``plan`` when still unplanned since
        ``older_than``; ``finish`` when every segment is terminal but no summary was claimed."""
        active = exists().where(SegmentDbRow.job_id == JobRow.id, SegmentDbRow.state.in_(ACTIVE))
        with self.session() as s:
            unplanned = s.scalars(
                select(JobRow.id)
                .where(JobRow.state == "queued", JobRow.segment_count == 0, JobRow.updated_at < older_than)
                .limit(limit)
            ).all()
            unfinished = s.scalars(
                select(JobRow.id)
                .where(
                    JobRow.state.in_(("queued", "running", "cancelled")),
                    JobRow.segment_count > 0,
                    JobRow.summary_state == "none",
                    ~active,
                )
                .limit(limit)
            ).all()
        return [(str(j), "plan") for j in unplanned] + [(str(j), "finish") for j in unfinished]

    def reopen_job(self, job_id: str) -> bool:
        """A job that ended without segments (planning failed) back to queued, for a retry."""
        with self.session() as s, s.begin():
            res = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.segment_count == 0, JobRow.state.in_(("failed", "queued")))
                .values(
                    state="queued", summary_state="none", summary=None, error=None, finished_at=None, updated_at=now()
                )
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def reopen_stale_summaries(self, older_than: datetime) -> int:
        """Summary claims older than ``older_than`` whose claimer died before storing it: claimable again."""
        with self.session() as s, s.begin():
            res = s.execute(
                update(JobRow)
                .where(JobRow.summary_state == "claimed", JobRow.updated_at < older_than)
                .values(summary_state="none", updated_at=now())
            )
            return int(res.rowcount)  # type: ignore[attr-defined]
