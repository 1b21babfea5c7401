"""``framescribe watch URL``: describe a live camera in rolling segments, with alerts and digests.

Runs in this process until ``--for`` ends or Ctrl-C; a second run with the same ``--name`` resumes the
camera's job after its last stored segment. ``framescribe streams`` lists the cameras and their status.
"""

from __future__ import annotations

import json
import signal
from typing import Annotated, Any

import typer

from worker.cli import ConfigOpt, DataDirOpt, DbOpt, app, out, settings_from
from worker.errors import InputError


@app.command()
def watch(
    url: Annotated[str, typer.Argument(help="rtsp://, rtsps://, http(s)://…/index.m3u8 or a device path.")],
    name: Annotated[str | None, typer.Option(help="Camera name (MQTT topics, resume key).")] = None,
    segment_seconds: Annotated[float, typer.Option(help="Length of a rolling segment (wall clock).")] = 10.0,
    fps: Annotated[float, typer.Option(help="Frames sampled per second.")] = 1.0,
    segmenter: Annotated[str, typer.Option(help="fixed | motion (static spans: no model call).")] = "fixed",
    preset: Annotated[str | None, typer.Option(help="describe | surveillance | sports.")] = None,
    describer: Annotated[str | None, typer.Option(help="auto | local | dashscope.")] = None,
    alert: Annotated[list[str] | None, typer.Option(help='Alert rule, e.g. "threat_level>=2" (repeatable).')] = None,
    digest: Annotated[str | None, typer.Option(help="Digest period, e.g. 1h, 15m.")] = None,
    for_: Annotated[str | None, typer.Option("--for", help="Stop after this long, e.g. 60s, 2h.")] = None,
    webhook: Annotated[str | None, typer.Option(help="Also POST alerts and digests here (signed).")] = None,
    no_mqtt: Annotated[bool, typer.Option("--no-mqtt", help="Do not publish to MQTT.")] = False,
    allow_camera: Annotated[
        list[str] | None, typer.Option(help="Allow this private host/CIDR (added to live.allow_cameras).")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Watch a live camera: rolling segments described as they close, alerts to MQTT/webhooks, digests."""
    from worker.bootstrap import build_ports
    from worker.live.options import WatchOptions, check_name, parse_duration
    from worker.live.source import check_live
    from worker.live.watcher import Watcher
    from worker.sources import check_url

    settings = settings_from(config, data_dir, database_url)
    allow = [*settings.live.allow_cameras, *(allow_camera or [])]
    source = check_live(url, allow, settings.live.devices)
    camera = check_name(name or _default_name(source.redacted))
    if webhook:
        check_url(webhook, [*settings.scheduler.allow_private_urls, *allow])
    opts = WatchOptions.parse(
        {
            "segment_seconds": segment_seconds,
            "fps": fps,
            "segmenter": segmenter,
            "preset": preset,
            "describer": describer,
            "alert": alert or [],
            "digest_seconds": parse_duration(digest, "digest"),
            "mqtt": not no_mqtt,
            "webhook_url": webhook,
        }
    )
    duration = parse_duration(for_, "for")
    ports = build_ports(settings, shared_limits=True)
    watcher = Watcher(ports, camera, source, opts)
    stop_keeping = _own(settings, watcher)
    previous = signal.signal(signal.SIGTERM, lambda *_: watcher.stop("terminated"))
    try:
        counters = watcher.run(duration)
    except KeyboardInterrupt:
        watcher.stop("interrupted")
        counters = watcher.counters
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_keeping()
    from worker.service import pipeline

    pipeline.finish(ports, watcher.job_id, None)  # the camera's job gets its summary; a next run reopens it
    report: dict[str, Any] = {"camera": camera, "job_id": watcher.job_id, **counters.as_dict()}
    out.print(json.dumps(report), markup=False)


@app.command()
def streams(config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None) -> None:
    """List the cameras (live streams) and their status."""
    from worker.bootstrap import store_for
    from worker.live.source import LiveSource
    from worker.live.store import LiveStore

    settings = settings_from(config, data_dir, database_url)
    live = LiveStore(store_for(settings.resolved_database_url))
    for s in live.all():
        red = LiveSource(s.url, "").redacted
        out.print(f"{s.name}\t{s.status}\t{s.desired}\t{s.job_id or '-'}\t{red}\t{s.reason or ''}", markup=False)


def _own(settings: Any, watcher: Any) -> Any:
    """Hold the camera's Redis lease while watching (a stream worker or another ``watch`` cannot run it
    at the same time); without Redis the CLI watches unguarded, with a warning."""
    import logging

    import redis

    from worker.live.lease import Lease

    lease = Lease(
        redis.Redis.from_url(settings.broker_url, socket_timeout=3), watcher.stream.id, settings.live.lease_ttl_s
    )
    try:
        if not lease.acquire():
            watcher.notifier.close()
            raise InputError(
                f"camera {watcher.name} is being watched already (by {lease.holder() or 'another process'})"
            )
    except redis.RedisError as exc:
        logging.getLogger(__name__).warning("no Redis (%s): watching without the camera lease", exc.__class__.__name__)
        return lambda: None
    return lease.keep(lambda: watcher.stop("lease lost"))


def _default_name(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    base = (parts.hostname or "camera") + (parts.path or "").replace("/", "-")
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in base).strip("-.")[:64]
    if not cleaned:
        raise InputError("give the camera a --name", field="name")
    return cleaned
