"""The result store's engine (SQLite WAL or PostgreSQL), its migrations, and the base its mixins share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, create_engine, event, func, select, text, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from worker.adapters.stores.schema_version import at_heads

MIGRATIONS = Path(__file__).resolve().parent.parent.parent / "migrations"


def now() -> datetime:
    return datetime.now(UTC)


def utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


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


class StoreBase:
    """What every store mixin relies on: an engine and a session factory (set by ``SqlResultStore``)."""

    engine: Engine

    def session(self) -> Session:
        raise NotImplementedError

    def db_now(self, offset_s: float = 0.0) -> ColumnElement[datetime]:
        """The database server's clock (plus ``offset_s``) as SQL: the one clock every lease, hold,
        reservation expiry and ``updated_at`` is written and compared with, so workers whose clocks
        disagree still agree on who holds what. PostgreSQL: ``statement_timestamp()``; SQLite: its own
        ``'now'`` (UTC, to the millisecond) in the text form SQLAlchemy stores datetimes in."""
        if self.engine.dialect.name == "postgresql":
            ts = func.statement_timestamp(type_=DateTime(timezone=True))
            return ts + timedelta(seconds=offset_s) if offset_s else ts
        ms = func.strftime("%Y-%m-%d %H:%M:%f", "now", f"{offset_s:+.3f} seconds")
        return type_coerce(ms.concat("000"), DateTime(timezone=True))  # to the µs, as SQLAlchemy writes them

    def db_time(self, s: Session) -> datetime:
        """``db_now()`` read once (one round trip), for rows inserted through the ORM."""
        return utc(s.execute(select(self.db_now())).scalar_one())
