"""The Celery app: Redis broker, at-least-once delivery (acks_late), task names. No task bodies here.

Why these settings: /work/shared/reliability-plan.md §1. In short, a task message is acknowledged only
after the task returns; a pool child killed mid-task puts its message back at once
(``task_reject_on_worker_lost``); a whole worker lost is covered by Redis' visibility timeout, which
must outlast the longest a message can stay unacked (time limit + retry countdown). Tasks are
idempotent (segment rows keyed ``(job_id, index)``, first writer wins), so re-running one is harmless.

The app reads Settings lazily, when Celery first needs its configuration, never at import.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar

from celery import Celery, bootsteps
from celery.signals import worker_init

from worker import heartbeat, logs
from worker.config import Settings, get_settings
from worker.errors import ConfigError

PLAN_JOB = "framescribe.plan_job"
RUN_JOB = "framescribe.run_job"  # alias of plan_job for enqueuers written against the conventions doc
RUN_SEGMENT = "framescribe.run_segment"
REAP_STALE = "framescribe.reap_stale"
GC_FRAMES = "framescribe.gc_frames"
SEND_WEBHOOK = "framescribe.send_webhook"
FIRE_SCHEDULE = "framescribe.fire_schedule"
# The one publish retry policy: a client (CLI, REST API, a task) hears "broker down" in about a second.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.0, "interval_step": 0.3, "interval_max": 0.5}

TASK_MODULES = ("worker.tasks", "worker.live.tasks")  # every task body; the names above are the one definition


def task_modules() -> list[str]:
    """The task modules that exist in this install."""
    return [name for name in TASK_MODULES if importlib.util.find_spec(name) is not None]


def check_settings(settings: Settings) -> None:
    """Refuse settings under which Redis would run a task twice in parallel or lose it.

    Raises:
        ConfigError: the visibility timeout does not outlast time limit + longest retry countdown.
    """
    w = settings.worker
    needed = w.task_time_limit_s + w.retry_max_delay_s
    if w.visibility_timeout_s <= needed:
        raise ConfigError(
            f"worker.visibility_timeout_s ({w.visibility_timeout_s} s) must be greater than "
            f"worker.task_time_limit_s ({w.task_time_limit_s} s) + worker.retry_max_delay_s "
            f"({w.retry_max_delay_s} s) = {needed} s; otherwise Redis re-delivers tasks that are still "
            "running and they execute twice. Raise FRAMESCRIBE_WORKER__VISIBILITY_TIMEOUT_S (same value on "
            "every worker) or lower the time limit / retry delay."
        )
    if w.lease_heartbeat_s * 2 > w.lease_ttl_s:
        raise ConfigError(
            f"worker.lease_heartbeat_s ({w.lease_heartbeat_s} s) must be at most half of worker.lease_ttl_s "
            f"({w.lease_ttl_s} s); otherwise one late renewal lets a running segment's lease expire and the "
            "recovery loop runs it a second time"
        )
    if not settings.broker_url.startswith(("redis://", "rediss://", "redis+socket://", "memory://")):
        raise ConfigError(
            f"broker_url must be a Redis URL (redis://host:6379/0), got {settings.broker_url.split('://')[0]}://…"
        )


def soft_time_limit(settings: Settings) -> int:
    limit = settings.worker.task_time_limit_s
    return max(1, min(limit - 2, int(limit * 0.9)))


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration for ``settings`` (checked first)."""
    check_settings(settings)
    w = settings.worker
    transport = {
        "visibility_timeout": w.visibility_timeout_s,
        # kombu >= 5.7: sweep for unacked messages of dead workers more often than the old ~100 s.
        "unacked_restore_interval": max(1, min(10, w.visibility_timeout_s // 60)),
        "unacked_restore_throttle": 1,
        # The sweep's lock lives in Redis; a Redis restart (AOF) during a sweep keeps it held for this long,
        # and no unacked message comes back meanwhile (kombu's default is 300 s).
        "unacked_mutex_expire": max(5, min(300, w.visibility_timeout_s // 4)),
        "socket_keepalive": True,
        "socket_connect_timeout": 10,
        "health_check_interval": 10,
    }
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "result_backend": None,  # the result store is the source of truth; no results in Redis
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_time_limit": w.task_time_limit_s,
        "task_soft_time_limit": soft_time_limit(settings),
        "task_default_queue": w.queue,
        "task_create_missing_queues": True,
        "worker_max_tasks_per_child": 200,  # bounds slow leaks in OpenCV/FFmpeg
        "worker_send_task_events": False,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": {
            # every worker runs the recovery loop itself (celery_app._Recovery); beat's run is a backstop
            "framescribe-reap-stale": {"task": REAP_STALE, "schedule": max(5.0, w.reaper_interval_s * 6)},
        },
    }


class FramescribeCelery(Celery):  # type: ignore[misc]
    """Configures itself from ``get_settings()`` the first time Celery reads its configuration."""

    def on_configure(self) -> None:  # type: ignore[override]
        self.config_from_object(celery_config(get_settings()))


def make_app(settings: Settings, name: str = "framescribe-producer") -> Celery:
    """A Celery app configured from explicit settings (producers such as the CLI and tests)."""
    producer = Celery(name, set_as_current=False)
    producer.config_from_object(
        {
            **celery_config(settings),
            # a client (CLI, REST API) should hear "broker down" in about a second, not hang
            "broker_connection_timeout": 2,
            "task_publish_retry_policy": PUBLISH_RETRY,
        }
    )
    return producer


app = FramescribeCelery("framescribe", include=task_modules())


class _FrameRetention(bootsteps.StartStopStep):  # type: ignore[misc]
    """Every ``worker.sweep_interval_s``: deletes old frames on this machine's disk (when a retention is
    configured) and the local files of jobs deleted on any machine (``worker.retention``)."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Timer"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def start(self, parent: Any) -> None:
        from worker.retention import collect_logged

        every = get_settings().worker.sweep_interval_s
        self.tref = parent.timer.call_repeatedly(every, collect_logged, (get_settings(),), priority=10)
        collect_logged(get_settings())

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()


class _Recovery(bootsteps.StartStopStep):  # type: ignore[misc]
    """The recovery loop (worker/recovery.py) in a thread of this worker's main process, started after
    the pool: re-queues orphaned work within seconds (leases in the store), whether or not beat runs."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.loop: Any = None

    def start(self, parent: Any) -> None:
        from worker.recovery import Loop

        self.loop = Loop(get_settings())
        self.loop.start()

    def stop(self, parent: Any) -> None:
        if self.loop is not None:
            self.loop.stop()


app.steps["worker"].add(_FrameRetention)
app.steps["worker"].add(_Recovery)
heartbeat.install(app)  # worker heartbeats + queue consumption in Redis (submit/status/doctor/metrics read them)
logs.connect_celery()  # logging.format (text|json) with job_id/segment on every line


@worker_init.connect  # type: ignore[untyped-decorator,misc]
def _migrate_once(**_: Any) -> None:
    """Open (and migrate) the store in the parent before the pool forks: one migration, an early clear
    error when the database is unreachable, and no connection inherited by the children."""
    from worker.adapters.stores.sql import SqlResultStore

    SqlResultStore(get_settings().resolved_database_url).close()
