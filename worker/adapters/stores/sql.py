"""ResultStore on SQLAlchemy: SQLite (WAL) by default, PostgreSQL in production; same code, same migrations.

The store's methods live in mixins by responsibility (jobs, segments, finishing, recovery); the engine
and migrations in ``engine.py``. This module keeps the public import path of everything below."""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from worker.adapters.stores.engine import MIGRATIONS as MIGRATIONS
from worker.adapters.stores.engine import build_engine as build_engine
from worker.adapters.stores.engine import migrate as migrate
from worker.adapters.stores.engine import now as now
from worker.adapters.stores.finishing import FinishingMixin
from worker.adapters.stores.leases import LeasesMixin
from worker.adapters.stores.recovery import RecoveryMixin
from worker.adapters.stores.reservations import ReservationsMixin
from worker.adapters.stores.segments import SegmentsMixin
from worker.adapters.stores.stops import StopsMixin
from worker.core.models import Job as Job  # re-exported: the store's callers import it from here
from worker.core.states import ACTIVE_SEGMENT
from worker.core.states import TERMINAL_JOB as TERMINAL_JOB  # re-exported
from worker.errors import StoreError

log = logging.getLogger(__name__)
ACTIVE = ACTIVE_SEGMENT


class SqlResultStore(FinishingMixin, SegmentsMixin, RecoveryMixin, LeasesMixin, StopsMixin, ReservationsMixin):
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

    def close(self) -> None:
        self.engine.dispose()
