"""Celery tasks of the ``streams`` queue: one stream per worker slot, owned through a Redis lease.

``framescribe.stream_run(stream_id)``: become the owner (or wait as the stream's single standby, taking
over when the owner's lease expires), run the watcher for at most one task-time slice, then hand the
stream on to a fresh task (hourly chaining keeps every task within the worker's time limit). The
owner renews its lease every third of its TTL and stops the moment the lease is lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, cast

import redis

from worker.adapters.stores.sql import SqlResultStore
from worker.bootstrap import build_ports
from worker.celery_app import app, soft_time_limit
from worker.config import Settings, get_settings
from worker.errors import FramescribeError
from worker.live.lease import Lease
from worker.live.options import WatchOptions
from worker.live.source import check_live
from worker.live.store import LiveStore
from worker.live.watcher import Watcher

log = logging.getLogger(__name__)
STREAM_RUN = "framescribe.stream_run"
SLICE_S = 3600.0


def send_run(settings: Settings, stream_id: str, producer: Any = None) -> None:
    (producer or app).send_task(STREAM_RUN, args=[stream_id], queue=settings.live.queue)


def _standby_key(stream_id: str) -> str:
    return f"framescribe:live:standby:{stream_id}"


@app.task(name=STREAM_RUN, acks_late=False, ignore_result=True)  # type: ignore[misc,untyped-decorator]
def stream_run(stream_id: str) -> str:
    settings = get_settings()
    ports = build_ports(settings, shared_limits=True)
    live = LiveStore(cast(SqlResultStore, ports.store))
    client = redis.Redis.from_url(settings.broker_url, socket_timeout=5)
    cfg = settings.live
    lease = Lease(client, stream_id, cfg.lease_ttl_s)
    standby = _standby_key(stream_id)
    me = f"{os.uname().nodename}:{os.getpid()}:{lease.token[:8]}"
    until = time.monotonic() + min(SLICE_S, soft_time_limit(settings) * 0.8)
    while not lease.acquire():  # somebody owns it: be the one standby, or leave
        if live.desired(stream_id) != "active":
            return "not active"
        current = client.get(standby)
        if current not in (None, b"requested", me.encode()):
            return "standby exists"
        if time.monotonic() > until:  # stay within the task time limit: a fresh standby carries on
            client.delete(standby)
            send_run(settings, stream_id)
            return "standby handed on"
        client.set(standby, me, px=round(cfg.lease_ttl_s * 2000))
        time.sleep(min(1.0, cfg.lease_ttl_s / 4))
    if client.get(standby) == me.encode():
        client.delete(standby)
    if live.desired(stream_id) != "active":
        lease.release()
        return "not active"
    return _own(settings, ports, live, client, lease, stream_id, me)


def _own(
    settings: Settings, ports: Any, live: LiveStore, client: redis.Redis, lease: Lease, stream_id: str, me: str
) -> str:
    cfg = settings.live
    stream = live.get(stream_id)
    try:
        source = check_live(stream.url, [*cfg.allow_cameras, *settings.scheduler.allow_private_urls], cfg.devices)
        opts = WatchOptions.parse(stream.options)
    except FramescribeError as exc:
        live.set_status(stream_id, "failed", exc.message, owner=me)
        lease.release()
        return "failed"
    lost = threading.Event()
    watcher = Watcher(
        ports,
        stream.name,
        source,
        opts,
        stream_id=stream_id,
        owner=me,
        keep_going=lambda: "lease lost" if lost.is_set() else None,
    )

    def ensure_standby() -> None:  # make sure somebody can take over
        if not client.exists(_standby_key(stream_id)):
            client.set(_standby_key(stream_id), "requested", px=round(max(60.0, cfg.lease_ttl_s * 4) * 1000))
            send_run(settings, stream_id)

    def on_lost() -> None:
        lost.set()
        watcher.stop("lease lost")

    stop_keeping = lease.keep(on_lost, ensure_standby)
    try:
        watcher.run(min(SLICE_S, soft_time_limit(settings) * 0.8))
    finally:
        stop_keeping()
    if not lost.is_set() and live.desired(stream_id) == "active":
        send_run(settings, stream_id)  # the next slice
        return "handed on"
    if live.desired(stream_id) == "deleted":
        job_id = watcher.job_id
        from worker.service import pipeline

        pipeline.finish(ports, job_id, "stream deleted")
    return "stopped"
