"""Service commands on ``worker.cli.app``: ``scheduler`` (the REST API) and ``beat`` (the schedule runner).

``scheduler`` is imported inside the commands: the ``worker`` package never imports it at import time.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli import ConfigOpt, DataDirOpt, DbOpt, app, settings_from
from worker.errors import ConfigError, InputError

if TYPE_CHECKING:
    import socket


def _env_overrides(data_dir: object, database_url: str | None) -> None:
    # Child processes (uvicorn reload, Celery) read settings from the environment: hand the flags down.
    if data_dir is not None:
        os.environ["FRAMESCRIBE_DATA_DIR"] = str(data_dir)
    if database_url is not None:
        os.environ["FRAMESCRIBE_DATABASE_URL"] = database_url


@app.command()
def scheduler(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: scheduler.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default: scheduler.port, 8080).")] = None,
    inline: Annotated[bool, typer.Option("--inline", help="Run jobs in this process (no broker, no beat).")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Start the REST API (uvicorn). Without API keys it only binds to a loopback address."""
    import uvicorn

    from scheduler.api.deps import is_loopback
    from scheduler.main import create_app

    _env_overrides(data_dir, database_url)
    settings = settings_from(config, None, None)
    bind_host = host or settings.scheduler.host
    bind_port = settings.scheduler.port if port is None else port
    if not (settings.api_keys or settings.read_only_api_keys) and not is_loopback(bind_host):
        raise ConfigError(
            f"refusing to serve on {bind_host} without API keys: set FRAMESCRIBE_API_KEYS (JSON list of keys or "
            "sha256:<hex> hashes), or bind to 127.0.0.1"
        )
    settings.scheduler.host, settings.scheduler.port = bind_host, bind_port
    sock = listen_socket(bind_host, bind_port)  # a busy port is one line, exit 2, before uvicorn logs anything
    server_config = uvicorn.Config(
        create_app(settings, inline=inline),
        host=bind_host,
        port=bind_port,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(server_config).run(sockets=[sock])


def listen_socket(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound here so that a busy port or a bad address is a clear InputError."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except (OSError, OverflowError) as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc}", field="host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        why = "the port is in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise InputError(
            f"cannot listen on {host}:{port}: {why} (choose another with --port or FRAMESCRIBE_SCHEDULER__PORT)",
            field="port",
        ) from None
    return sock


@app.command()
def beat(
    max_interval: Annotated[
        float, typer.Option(help="Longest sleep between checks (s); also how fast API changes apply.")
    ] = 5.0,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Run the schedule runner (Celery beat with RedBeat). Start one or more: a Redis lock lets one fire
    at a time, the others wait and take over when it stops."""
    from worker.config import get_settings

    _env_overrides(data_dir, database_url)
    settings = settings_from(config, None, None)
    get_settings.cache_clear()
    from scheduler.schedules import ScheduleMirror, configure_redbeat
    from worker.adapters.stores.schedules import ScheduleStore
    from worker.bootstrap import store_for
    from worker.celery_app import app as celery_app
    from worker.celery_app import check_settings

    check_settings(settings)
    configure_redbeat(celery_app, settings, max_interval_s=max_interval)
    store = store_for(settings.resolved_database_url)
    kept = ScheduleMirror(celery_app).sync(ScheduleStore(store.engine).page(limit=1_000_000))
    typer.echo(f"beat: {kept} schedule(s) in Redis (prefix {celery_app.conf.redbeat_key_prefix})", err=True)
    celery_app.Beat(
        scheduler="scheduler.schedules:FramescribeBeat",
        max_interval=max_interval,
        loglevel=loglevel,
        redirect_stdouts=False,
    ).run()
