"""Result-store fixtures: a migrated store on SQLite or on a fresh PostgreSQL database per test."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from worker.adapters.stores.sql import SqlResultStore

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def pg_database(prefix: str = "fs") -> Iterator[str]:
    """A fresh PostgreSQL database (dropped afterwards); skips when the server is not answering."""
    if not pg_up():
        pytest.skip("PostgreSQL is not answering on 127.0.0.1:5432 (scripts/services starts it)")
    with temp_pg_database(prefix) as url:
        yield url


@contextlib.contextmanager
def temp_pg_database(prefix: str = "fs") -> Iterator[str]:
    """A fresh PostgreSQL database on the local server, dropped afterwards (also used by benchmarks)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlResultStore]:
    """An empty, migrated store: SQLite in tmp_path, or a fresh PostgreSQL database for this test."""
    if request.param == "sqlite":
        s = SqlResultStore(f"sqlite:///{tmp_path / 'fs.db'}")
        yield s
        s.close()
        return
    with pg_database() as url:
        s = SqlResultStore(url)
        yield s
        s.close()
