"""The checks behind ``framescribe doctor``: each returns one verdict and the command that fixes it.

A check is *needed* when the configuration (and the mode: queue, or ``--embedded`` for
``framescribe run``) depends on it; a failed needed check makes doctor exit 1, a failed optional one
is a warning. Every network check has a deadline of a few seconds. Secrets are never printed.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

from worker.config import Settings

DEADLINE_S = 2.0
MIN_FREE_BYTES = 1024**3
PACKAGES = ("celery", "redis", "dashscope", "opencv-python", "av", "SQLAlchemy", "fastapi")


@dataclass(frozen=True)
class Verdict:
    name: str
    ok: bool | None  # None: not applicable / skipped
    detail: str
    fix: str = ""
    needed: bool = True

    @property
    def label(self) -> str:
        if self.ok is None:
            return "skip"
        if self.ok:
            return "ok"
        return "FAIL" if self.needed else "warn"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def check_python() -> Verdict:
    versions = ", ".join(f"{p} {_version(p)}" for p in PACKAGES)
    missing = [p for p in PACKAGES if _version(p) == "missing"]
    py = platform.python_version()
    if sys.version_info < (3, 11) or missing:
        return Verdict("python", False, f"Python {py}; {versions}", "pip install -e . (Python >= 3.11)")
    return Verdict("python", True, f"Python {py}, framescribe {_version('framescribe')}; {versions}")


def check_media() -> Verdict:
    """PyAV and OpenCV import and can decode; the ffmpeg binary is only for making test media."""
    try:
        import av
        import cv2

        ffmpeg_in_cv = bool(cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG))
        codec = ".".join(map(str, av.library_versions["libavcodec"]))
        detail = (
            f"PyAV {av.__version__} (libavcodec {codec}), OpenCV {cv2.__version__} "
            f"({'with' if ffmpeg_in_cv else 'WITHOUT'} its FFmpeg backend)"
        )
    except Exception as exc:
        return Verdict("media", False, f"cannot load PyAV/OpenCV: {exc}", "pip install -e . (opencv-python, av)")
    ffmpeg = shutil.which("ffmpeg")
    detail += f"; ffmpeg binary: {ffmpeg or 'not found (only tests and examples need it)'}"
    if not ffmpeg_in_cv:
        return Verdict("media", False, detail, "pip install --force-reinstall opencv-python")
    return Verdict("media", True, detail)


def _data_source(settings: Settings, given: str | None) -> str:
    if given is not None:
        return f"from {given}"
    if os.environ.get("FRAMESCRIBE_DATA_DIR"):
        return "from FRAMESCRIBE_DATA_DIR"
    return f"from {settings.config}" if settings.config else "the default: data/ under the current folder"


def check_data_dir(settings: Settings, given: str | None = None) -> Verdict:
    """The data folder: which one and from where (``given``: the flag that set it), writable."""
    folder = settings.data_dir.resolve()
    src = _data_source(settings, given)
    fix = f"mkdir -p {folder} (or set FRAMESCRIBE_DATA_DIR to a writable folder)"
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not folder.exists():
        if os.access(probe, os.W_OK):
            return Verdict("data folder", True, f"{folder} ({src}): not created yet; the first job creates it")
        return Verdict("data folder", False, f"{folder} ({src}) does not exist and {probe} is not writable", fix)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Verdict("data folder", False, f"{folder} ({src}) is not writable: {exc.strerror}", fix)
    return Verdict("data folder", True, f"{folder} ({src}), writable")


def check_disk(settings: Settings) -> Verdict:
    probe = settings.data_dir.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    detail = f"{usage.free / 1024**3:.1f} GiB free of {usage.total / 1024**3:.1f} GiB at {probe}"
    if usage.free < MIN_FREE_BYTES:
        return Verdict("disk", False, detail, "free space, `framescribe gc --days N`, or move FRAMESCRIBE_DATA_DIR")
    return Verdict("disk", True, detail)


def check_store(settings: Settings) -> Verdict:
    """Which store, reachable, and at the code's migration heads (never migrates it)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from worker.adapters.stores.sql import MIGRATIONS, build_engine
    from worker.cli_store import safe_url, sqlite_file

    url = settings.resolved_database_url
    shown = safe_url(url)
    file = sqlite_file(url)
    if file is not None and not file.is_file():
        return Verdict("store", True, f"{shown}: not created yet; the first job creates and migrates it")
    is_pg = url.startswith("postgres")
    fix = "start PostgreSQL (scripts/services) or fix FRAMESCRIBE_DATABASE_URL" if is_pg else \
        "check FRAMESCRIBE_DATA_DIR / FRAMESCRIBE_DATABASE_URL"  # fmt: skip
    engine = build_engine(url) if not is_pg else _pg_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = set(MigrationContext.configure(conn).get_current_heads())
    except Exception as exc:
        reason = " ".join(str(getattr(exc, "orig", exc)).split())[:200]
        return Verdict("store", False, f"{shown} does not answer: {reason}", fix)
    finally:
        engine.dispose()
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    heads = set(ScriptDirectory.from_config(cfg).get_heads())
    if not heads <= current:
        missing = ", ".join(sorted(heads - current))
        return Verdict(
            "store", False, f"{shown}: not migrated (missing {missing})",
            "framescribe jobs list (opening the store with this version migrates it)",
        )  # fmt: skip
    return Verdict("store", True, f"{shown}: answers, migrated ({', '.join(sorted(current))})")


def _pg_engine(url: str) -> Any:
    from sqlalchemy import create_engine

    return create_engine(url, connect_args={"connect_timeout": int(DEADLINE_S)}, pool_pre_ping=False)


def _redis(settings: Settings) -> Any:
    from worker.heartbeat import redis_client

    return redis_client(settings.broker_url)


REDIS_FIX = "start Redis (scripts/services, or redis-server) or fix FRAMESCRIBE_BROKER_URL"


def check_broker(settings: Settings) -> Verdict:
    from worker.cli_store import safe_url

    shown = safe_url(settings.broker_url)
    try:
        client = _redis(settings)
        try:
            client.ping()
            info = client.info("server")
        finally:
            client.close()
    except Exception as exc:
        return Verdict("broker", False, f"{shown} does not answer ({type(exc).__name__})", REDIS_FIX)
    return Verdict("broker", True, f"{shown}: Redis {info.get('redis_version', '?')} answers")


def check_workers(settings: Settings, deadline_s: float = DEADLINE_S) -> Verdict:
    """Celery control ping (with a deadline), then which queues the answering workers consume."""
    from worker.celery_app import make_app

    queue = settings.worker.queue
    app = make_app(settings, name="framescribe-doctor")
    try:
        replies = app.control.ping(timeout=deadline_s) or []
        queues: dict[str, list[str]] = {}
        if replies:
            active = app.control.inspect(timeout=deadline_s).active_queues() or {}
            queues = {name: sorted(q["name"] for q in qs) for name, qs in active.items()}
    except Exception as exc:
        return Verdict("workers", False, f"cannot ask the workers: {type(exc).__name__}: {exc}", REDIS_FIX)
    finally:
        app.close()
    on_queue = sorted(name for name, qs in queues.items() if queue in qs)
    if not replies:
        return Verdict("workers", False, f"no worker answered a ping within {deadline_s:g} s",
                       "start one with `framescribe worker`")  # fmt: skip
    if not on_queue:
        seen = ", ".join(sorted({q for qs in queues.values() for q in qs})) or "none"
        return Verdict(
            "workers", False, f"{len(replies)} worker(s) answer, none consumes queue '{queue}' (they do: {seen})",
            f"start one with `framescribe worker --queues {queue}`",
        )  # fmt: skip
    return Verdict("workers", True, f"{len(on_queue)} worker(s) consume queue '{queue}' ({', '.join(on_queue)}); "
                   f"{len(replies)} answered a ping")  # fmt: skip


def check_beat(settings: Settings) -> Verdict:
    """RedBeat holds ``<prefix>:lock`` in Redis while a beat runs (schedules need it; recovery runs in
    the workers)."""
    from scheduler.schedules import redbeat_prefix

    key = redbeat_prefix(settings) + ":lock"
    try:
        client = _redis(settings)
        try:
            ttl = client.pttl(key)
        finally:
            client.close()
    except Exception as exc:
        return Verdict("beat", False, f"cannot read the beat lock ({type(exc).__name__})", REDIS_FIX)
    if ttl is None or ttl == -2:  # -2: no such key; -1: held without expiry
        return Verdict("beat", False, f"no beat holds {key} (schedules do not fire; workers still recover work)",
                       "start one with `framescribe beat`")  # fmt: skip
    return Verdict("beat", True, f"a beat holds {key}")


def dashscope_base(settings: Settings) -> str:
    base = settings.dashscope.base_url or os.environ.get("DASHSCOPE_HTTP_BASE_URL")
    return (base or "https://dashscope.aliyuncs.com/api/v1").rstrip("/")


def check_dashscope_key(settings: Settings) -> Verdict:
    key = settings.dashscope_api_key
    where = "dashscope.api_key" if settings.dashscope.api_key is not None else "DASHSCOPE_API_KEY"
    if key:
        return Verdict("dashscope key", True, f"present (from {where}; not shown)")
    if settings.describer.kind == "dashscope":
        return Verdict("dashscope key", False, "describer.kind is dashscope but no key is set",
                       "export DASHSCOPE_API_KEY=sk-… (or describer.kind: auto for the local describer)")  # fmt: skip
    return Verdict("dashscope key", None, "no key: jobs use the local OpenCV describer", needed=False)


def check_dashscope_online(settings: Settings, deadline_s: float = 5.0) -> Verdict:
    """One unbilled request (the upload policy) with the key: reachable, and is the key accepted?"""
    import httpx

    key = settings.dashscope_api_key
    if not key:
        return Verdict("dashscope online", None, "no key to try", needed=False)
    base = dashscope_base(settings)
    url = f"{base}/uploads"
    params = {"action": "getPolicy", "model": settings.dashscope.model}
    try:
        resp = httpx.get(url, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=deadline_s)
    except httpx.HTTPError as exc:
        return Verdict("dashscope online", False, f"{base} unreachable ({type(exc).__name__})",
                       "check the network/proxy (NO_PROXY) or FRAMESCRIBE_DASHSCOPE__BASE_URL")  # fmt: skip
    if resp.status_code in (401, 403):
        return Verdict("dashscope online", False, f"{base} refused the key (HTTP {resp.status_code})",
                       "export DASHSCOPE_API_KEY=<a valid key for this region>")  # fmt: skip
    if resp.status_code >= 500:
        return Verdict("dashscope online", False, f"{base} answered HTTP {resp.status_code}",
                       "retry later (DashScope is failing)")  # fmt: skip
    return Verdict("dashscope online", True, f"{base} answered HTTP {resp.status_code} in "
                   f"{resp.elapsed.total_seconds() * 1000:.0f} ms; key accepted")  # fmt: skip


def mqtt_url(settings: Settings) -> tuple[str | None, bool]:
    """(MQTT URL for alerts, set explicitly?) from the live-cameras settings when this build has them."""
    live = getattr(settings, "live", None)
    url = getattr(live, "mqtt_url", None)
    explicit = live is not None and "mqtt_url" in getattr(live, "model_fields_set", set())
    return (str(url) if url else None), explicit


def mqtt_connect(url: str, deadline_s: float = DEADLINE_S) -> str | None:
    """MQTT 3.1.1 CONNECT -> CONNACK; None when the broker accepts, else the reason."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    client_id = f"framescribe-doctor-{os.getpid()}".encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(client_id).to_bytes(2, "big") + client_id
    packet = b"\x10" + bytes([len(body)]) + body
    try:
        with socket.create_connection((host, port), timeout=deadline_s) as sock:
            sock.settimeout(deadline_s)
            sock.sendall(packet)
            ack = sock.recv(4)
            sock.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError as exc:
        return f"{host}:{port} does not answer ({exc.strerror or type(exc).__name__})"
    if len(ack) < 4 or ack[0] != 0x20:
        return f"{host}:{port} is not an MQTT broker"
    return None if ack[3] == 0 else f"{host}:{port} refused the connection (CONNACK code {ack[3]})"


def check_mqtt(settings: Settings) -> Verdict:
    url, explicit = mqtt_url(settings)
    if url is None:
        return Verdict("mqtt", None, "no MQTT alerts configured", needed=False)
    problem = mqtt_connect(url)
    if problem is None:
        return Verdict("mqtt", True, f"{url}: CONNACK accepted", needed=explicit)
    return Verdict("mqtt", False, problem, "start Mosquitto (mosquitto -d) or fix FRAMESCRIBE_LIVE__MQTT_URL",
                   needed=explicit)  # fmt: skip


def run_checks(
    settings: Settings, *, embedded: bool, online: bool, data_flag: str | None = None
) -> list[tuple[Verdict, float]]:
    """Every check in order, each with how long it took; the broker-dependent ones only when it answers."""
    plan: list[Callable[[], Verdict]] = [
        check_python,
        check_media,
        lambda: check_data_dir(settings, data_flag),
        lambda: check_store(settings),
        lambda: check_disk(settings),
    ]
    results: list[tuple[Verdict, float]] = []
    for step in plan:
        results.append(_timed(step))
    if not embedded:
        broker = _timed(lambda: check_broker(settings))
        results.append(broker)
        if broker[0].ok:
            results.append(_timed(lambda: check_workers(settings)))
            results.append(_timed(lambda: check_beat(settings)))
        else:
            for name in ("workers", "beat"):
                results.append((Verdict(name, False, "not checked: the broker does not answer", REDIS_FIX), 0.0))
    results.append(_timed(lambda: check_dashscope_key(settings)))
    if online:
        results.append(_timed(lambda: check_dashscope_online(settings)))
    if not embedded:  # alerts go out from live cameras (`framescribe watch`), never from `framescribe run`
        results.append(_timed(lambda: check_mqtt(settings)))
    return results


def _timed(step: Callable[[], Verdict]) -> tuple[Verdict, float]:
    started = time.monotonic()
    try:
        verdict = step()
    except Exception as exc:  # a check that breaks is a failed check, not a traceback
        verdict = Verdict(getattr(step, "__name__", "check"), False, f"check failed: {type(exc).__name__}: {exc}")
    return verdict, time.monotonic() - started
