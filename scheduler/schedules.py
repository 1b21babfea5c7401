"""Schedule rows <-> entries of the scheduling engine (Celery beat with RedBeat: entries live in Redis).

The database row is the truth; ``ScheduleMirror`` writes one RedBeat entry per enabled schedule
(``framescribe.fire_schedule(schedule_id)``), and ``framescribe beat`` runs ``FramescribeBeat``:
RedBeat's scheduler, which reads entries from Redis on every tick (so API changes apply at run time),
keeps ``last_run_at`` there (so restarts remember it) and holds a Redis lock (so a second beat process
waits instead of firing too). A run missed while beat was down fires once when it comes back: an
overdue entry is due "now", and after firing its next time is computed from now.

Schedule format: ``cron`` (5 fields ``min hour day month weekday``, or 6 with seconds first) read in
``timezone`` (IANA name, default UTC), or ``interval_s`` (seconds between runs, >= 1).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis
from celery import Celery
from celery.schedules import BaseSchedule, schedstate
from croniter import croniter
from redbeat.decoder import RedBeatJSONDecoder, RedBeatJSONEncoder
from redbeat.schedulers import (
    RedBeatScheduler,
    RedBeatSchedulerEntry,
    acquire_distributed_beat_lock,
    ensure_conf,
    get_redis,
)

from worker.adapters.stores.schedules import Schedule
from worker.celery_app import FIRE_SCHEDULE
from worker.config import Settings
from worker.errors import PlanError

log = logging.getLogger(__name__)


ENTRY_PREFIX = "fs-schedule:"
MIN_INTERVAL_S = 1.0
MAX_INTERVAL_S = 366 * 86400.0
CATCH_UP_HORIZON = timedelta(days=400)


def utcnow() -> datetime:
    return datetime.now(UTC)


def zone(name: str) -> ZoneInfo:
    try:
        if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise PlanError(
            f"unknown timezone '{name[:64]}': use an IANA name such as Europe/Berlin", field="timezone"
        ) from None


def check_cron(expr: str) -> str:
    """A cron expression with 5 fields, or 6 with seconds first; PlanError naming the problem."""
    fields = expr.split()
    if len(expr) > 200 or len(fields) not in (5, 6):
        raise PlanError("cron needs 5 fields (minute hour day month weekday) or 6 with seconds first", field="cron")
    try:
        ok = croniter.is_valid(" ".join(fields), second_at_beginning=len(fields) == 6)
    except Exception:  # croniter raises a zoo of errors for odd input; all mean "invalid"
        ok = False
    if not ok:
        raise PlanError(f"'{expr[:200]}' is not a valid cron expression", field="cron")
    return " ".join(fields)


class FsSchedule(BaseSchedule):  # type: ignore[misc]
    """A cron expression in a timezone, or a fixed interval; what beat asks "is it due?"."""

    def __init__(self, cron: str | None = None, tz: str = "UTC", interval_s: float | None = None) -> None:
        super().__init__(nowfun=utcnow)
        if (cron is None) == (interval_s is None):
            raise PlanError("give either cron or interval_s", field="cron")
        if interval_s is not None and not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S:
            raise PlanError(
                f"interval_s must be between {MIN_INTERVAL_S:g} and {MAX_INTERVAL_S:g} seconds", field="interval_s"
            )
        self.cron = check_cron(cron) if cron is not None else None
        self.tz_name = tz
        self.zone = zone(tz)
        self.interval_s = interval_s

    @property
    def tz(self) -> tzinfo:  # type: ignore[override]
        return UTC

    def next_after(self, when: datetime) -> datetime:
        """The first run strictly after ``when`` (aware UTC)."""
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        when = max(when, utcnow() - CATCH_UP_HORIZON)
        if self.interval_s is not None:
            return when + timedelta(seconds=self.interval_s)
        assert self.cron is not None
        it = croniter(self.cron, when.astimezone(self.zone), second_at_beginning=len(self.cron.split()) == 6)
        nxt: datetime = it.get_next(datetime)
        return nxt.astimezone(UTC)

    def period_s(self) -> float:
        if self.interval_s is not None:
            return self.interval_s
        first = self.next_after(utcnow())
        return (self.next_after(first) - first).total_seconds()

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        return self.next_after(last_run_at) - utcnow()

    def is_due(self, last_run_at: datetime) -> schedstate:  # type: ignore[override]
        now = utcnow()
        if self.next_after(last_run_at) <= now:  # due; however many runs were missed, fire once
            return schedstate(True, max(0.0, (self.next_after(now) - now).total_seconds()))
        return schedstate(False, max(0.0, (self.next_after(last_run_at) - now).total_seconds()))

    def as_json(self) -> dict[str, Any]:
        return {"__type__": "fs_schedule", "cron": self.cron, "tz": self.tz_name, "interval_s": self.interval_s}

    def __repr__(self) -> str:
        return f"<FsSchedule {self.cron or f'every {self.interval_s:g}s'} {self.tz_name}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FsSchedule) and self.as_json() == other.as_json()

    def __hash__(self) -> int:
        return hash(json.dumps(self.as_json(), sort_keys=True))


def engine_schedule(s: Schedule) -> FsSchedule:
    return FsSchedule(s.cron, s.timezone, s.interval_s)


def next_run_at(s: Schedule, last_run_at: datetime | None) -> datetime | None:
    """When the schedule fires next as beat sees it (None when disabled)."""
    if not s.enabled:
        return None
    nxt = engine_schedule(s).next_after(last_run_at or s.updated_at)
    return max(nxt, utcnow())


# -- RedBeat glue -----------------------------------------------------------------------------
class _Encoder(RedBeatJSONEncoder):  # type: ignore[misc]
    def default(self, obj: Any) -> Any:
        if isinstance(obj, FsSchedule):
            return obj.as_json()
        return super().default(obj)


class FramescribeEntry(RedBeatSchedulerEntry):  # type: ignore[misc]
    """A RedBeat entry that can store ``FsSchedule`` (RedBeat's codec knows only its own types)."""

    @staticmethod
    def decode_definition(definition: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(definition, cls=RedBeatJSONDecoder)
        sched = data.get("schedule")
        if isinstance(sched, dict) and sched.get("__type__") == "fs_schedule":
            data["schedule"] = FsSchedule(sched.get("cron"), sched.get("tz") or "UTC", sched.get("interval_s"))
        return data

    def save(self) -> FramescribeEntry:
        definition = {
            "name": self.name,
            "task": self.task,
            "args": self.args,
            "kwargs": self.kwargs,
            "options": self.options,
            "schedule": self.schedule,
            "enabled": self.enabled,
        }
        meta = {"last_run_at": self.last_run_at}
        with get_redis(self.app).pipeline() as pipe:
            pipe.hset(self.key, "definition", json.dumps(definition, cls=_Encoder))
            pipe.hsetnx(self.key, "meta", json.dumps(meta, cls=_Encoder))
            pipe.zadd(self.app.redbeat_conf.schedule_key, {self.key: self.score})
            pipe.execute()
        return self


class FramescribeBeat(RedBeatScheduler):  # type: ignore[misc]
    """RedBeat's scheduler with framescribe's entries (``celery beat -S scheduler.schedules:FramescribeBeat``).

    Rides out Redis outages (issue 16): RedBeat's tick extends its lock and reads its entries in Redis,
    and a ConnectionError there used to end ``framescribe beat``. Here a Redis error is logged and the
    tick is tried again; a lock lost meanwhile (Redis restarted without persistence) is taken again when
    free, and this beat fires nothing while another one holds it."""

    Entry = FramescribeEntry
    _outage = 0

    def tick(self, min: Any = min, **kwargs: Any) -> float:
        try:
            if self.lock_key and self.lock is None:  # Redis was down when beat started: take the lock now
                acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=self))
            interval = float(super().tick(min=min, **kwargs))
        except redis.exceptions.LockError:  # not ours any more: take it again when nobody holds it
            self._outage += 1
            if self.lock is not None and self.lock.acquire(blocking=False):
                log.warning("beat: the schedule lock was lost (Redis restarted?); taken again")
                self._outage = 0
            return float(self.max_interval)
        except (redis.exceptions.RedisError, OSError) as exc:
            self._outage += 1
            if self._outage == 1 or self._outage % 12 == 0:
                log.warning("beat: Redis unreachable (%s: %s); still running, retrying", type(exc).__name__, exc)
            return float(self.max_interval)
        if self._outage:
            log.warning("beat: Redis reachable again after %d failed tick(s)", self._outage)
            self._outage = 0
        return interval


def redbeat_prefix(settings: Settings) -> str:
    return f"redbeat:{settings.worker.queue}:"


def configure_redbeat(app: Celery, settings: Settings, *, max_interval_s: float = 5.0) -> None:
    """Point RedBeat at the broker's Redis with a key prefix per queue (one set of entries per deployment)."""
    app.conf.update(
        redbeat_redis_url=settings.broker_url,
        redbeat_key_prefix=redbeat_prefix(settings),
        redbeat_redis_options={"socket_connect_timeout": 5, "socket_timeout": 10, "retry_period": 30},
        beat_max_loop_interval=max_interval_s,
        beat_scheduler="scheduler.schedules:FramescribeBeat",
    )


class ScheduleMirror:
    """Keeps the RedBeat entries equal to the schedule rows (enabled ones only)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        ensure_conf(app)

    def _key(self, schedule_id: str) -> str:
        key: str = FramescribeEntry.generate_key(self.app, ENTRY_PREFIX + schedule_id)
        return key

    def _entry(self, s: Schedule) -> FramescribeEntry:
        sched = engine_schedule(s)
        expires = max(60.0, min(sched.period_s(), 86400.0))  # a fire message older than a period is moot
        return FramescribeEntry(
            name=ENTRY_PREFIX + s.id,
            task=FIRE_SCHEDULE,
            schedule=sched,
            args=[s.id],
            kwargs={},
            options={"expires": expires},
            enabled=True,
            app=self.app,
        )

    def put(self, s: Schedule) -> None:
        """Create or update the entry; a new entry counts from now (no immediate run), an updated one
        keeps its last run."""
        if not s.enabled:
            self.remove(s.id)
            return
        entry = self._entry(s)
        entry.last_run_at = self.last_run_at(s.id) or utcnow()
        entry.save()

    def remove(self, schedule_id: str) -> None:
        FramescribeEntry(name=ENTRY_PREFIX + schedule_id, app=self.app).delete()

    def last_run_at(self, schedule_id: str) -> datetime | None:
        try:
            meta = FramescribeEntry.load_meta(self._key(schedule_id), app=self.app)
        except KeyError:
            return None
        value = meta.get("last_run_at")
        return value if isinstance(value, datetime) else None

    def sync(self, schedules: Iterable[Schedule]) -> int:
        """Make Redis match the rows (after a Redis restart without persistence, say); returns entries kept."""
        wanted = {}
        for s in schedules:
            if s.enabled:
                wanted[self._key(s.id)] = s
        redis = get_redis(self.app)
        prefix = self._key("")
        for key in list(redis.scan_iter(match=prefix + "*", count=500)):
            if key not in wanted:
                redis.zrem(self.app.redbeat_conf.schedule_key, key)
                redis.delete(key)
        for s in wanted.values():
            self.put(s)
        return len(wanted)

    def ping(self) -> bool:
        return bool(get_redis(self.app).ping())
