"""Queue commands on ``worker.cli.app``: ``submit``, ``status``, ``worker``, ``cancel``, ``retry``, ``gc``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from worker.cli import (
    ConfigOpt,
    DataDirOpt,
    DbOpt,
    WebhookOpt,
    app,
    job_options_from,
    out,
    settings_from,
    with_job_options,
)
from worker.cli_quick import status_line
from worker.cli_store import open_store
from worker.core.states import TERMINAL_JOB
from worker.errors import InputError

if TYPE_CHECKING:
    from worker.config import Settings

TERMINAL = TERMINAL_JOB


def _source(video: str, settings: Settings) -> Any:
    """The job source for a path or an http(s) URL, checked as the worker will (``service.sources``)."""
    from worker.service import sources

    if not sources.is_url(video) and not settings.allowed_roots:  # the submitting user's own file
        from worker.adapters.files import check_file

        check_file(Path(video).resolve(), settings.limits)
    return sources.resolve(video, settings)


@app.command()
@with_job_options
def submit(
    video: Annotated[str, typer.Argument(help="A video file (inside the allowed roots) or an http(s) URL.")],
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="A repeat with the same key returns the first job.")
    ] = None,
    webhook_url: WebhookOpt = None,
    queue: Annotated[str | None, typer.Option(help="Celery queue (default: worker.queue).")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    *,
    options: dict[str, Any],  # the job options (with_job_options)
) -> None:
    """Queue VIDEO for the workers and print the job id at once."""
    from worker.bootstrap import celery_enqueuer, control_ports, store_for
    from worker.service import jobs
    from worker.sources import check_url

    settings = settings_from(config, data_dir, database_url)
    opts = job_options_from(options)
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise InputError("--idempotency-key must be 1 to 200 characters", field="idempotency_key")
    if webhook_url:
        check_url(webhook_url, allow=settings.scheduler.allow_private_urls)
    source = _source(video, settings)
    store = store_for(settings.resolved_database_url)  # created on first use, as before
    ports = control_ports(settings, store, enqueuer=celery_enqueuer(settings, queue))
    job, _ = jobs.submit(ports, source, opts, idempotency_key=idempotency_key, webhook_url=webhook_url)
    out.print(job.id)
    from worker.heartbeat import warn_no_worker  # Celery: only the commands that need it

    warn_no_worker(settings, queue)


@app.command()
def status(
    job_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Print changes until the job ends.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls with --follow.", min=0.1)] = 1.0,
    warn_after: Annotated[
        float, typer.Option(min=0.1, help="--follow: warn when no worker took the job for this many seconds.")
    ] = 10.0,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Show a job's state (queued, running, done, partial, failed, cancelled) and its segment counts."""
    settings = settings_from(config, data_dir, database_url)
    store = open_store(settings, read_only=True)
    job = store.get_job(job_id)
    last = status_line(job, store.counts(job_id))
    out.print(last, markup=False)
    if follow and job.state not in TERMINAL:
        from worker.heartbeat import IdleWatch  # the broker's heartbeats (Celery, Redis): only a follower reads them

        idle = IdleWatch(settings, warn_after)
        while job.state not in TERMINAL:
            idle.check(job.state)
            time.sleep(interval)
            job = store.get_job(job_id)
            line = status_line(job, store.counts(job_id))
            if line != last:
                out.print(line, markup=False)
                last = line
                idle.progressed()
    if follow and job.state == "failed":
        raise typer.Exit(1)


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Processes in this worker (default: CPU count).")] = None,
    queues: Annotated[str | None, typer.Option(help="Comma-separated queues (default: worker.queue).")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Start a Celery worker (same as `celery -A worker.celery_app worker`)."""
    from worker.config import get_settings

    # The pool processes read their settings from the environment: hand the flags down that way.
    if data_dir is not None:
        os.environ["FRAMESCRIBE_DATA_DIR"] = str(data_dir)
    if database_url is not None:
        os.environ["FRAMESCRIBE_DATABASE_URL"] = database_url
    settings = settings_from(config, None, None)
    get_settings.cache_clear()
    from worker.celery_app import app as celery_app
    from worker.celery_app import check_settings

    check_settings(settings)
    argv = ["worker", f"--loglevel={loglevel}", f"--queues={queues or settings.worker.queue}"]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    celery_app.worker_main(argv)


@app.command()
def cancel(
    job_id: str,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Stop a job's queued and running segments; finished segments are kept. Summary and webhook at once."""
    from worker.bootstrap import celery_enqueuer, control_ports
    from worker.service import jobs

    settings = settings_from(config, data_dir, database_url)
    store = open_store(settings, read_only=True)  # no store: said in one line, none created
    enqueuer = celery_enqueuer(settings) if store.get_job(job_id).webhook_url else None  # the webhook's sender
    stopped = jobs.cancel(control_ports(settings, store, enqueuer=enqueuer), job_id)
    _announce(settings, job_id)
    out.print(f"job {job_id} cancelled: {stopped} segment(s) stopped, finished segments kept")


@app.command()
def retry(
    job_id: str,
    queue: Annotated[str | None, typer.Option(help="Celery queue (default: worker.queue).")] = None,
    inline: Annotated[bool, typer.Option("--inline", help="Run it in this process (no broker).")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Run a failed, partial or cancelled job's failed and cancelled segments again (the job is re-planned
    as the REST API does: re-probe, budget re-check; finished segments are kept)."""
    from worker.bootstrap import celery_enqueuer, control_ports, drain, inline_ports
    from worker.service import jobs

    settings = settings_from(config, data_dir, database_url)
    store = open_store(settings, read_only=True)  # no store: said in one line, none created
    if inline:  # embedded mode: the job runs here, no broker to tell
        ports = inline_ports(settings)
        jobs.retry(ports, job_id)
        drain(ports, timeout_s=3600)
        job = ports.store.get_job(job_id)
        out.print(f"job {job_id} {job.state}" + (f": {job.error}" if job.error else ""))
        return
    reset = jobs.retry(control_ports(settings, store, enqueuer=celery_enqueuer(settings, queue)), job_id)
    _announce(settings, job_id)
    if reset:
        out.print(f"job {job_id}: {reset} segment(s) queued again")
    else:
        out.print(f"job {job_id} queued for planning again")


def _announce(settings: Settings, job_id: str) -> None:
    """Wake the job's open event streams now (not at their fallback poll), as a worker's change does."""
    from worker.adapters.queue.changes import announce

    announce(settings.broker_url, job_id)


@app.command()
def gc(
    days: Annotated[
        float | None, typer.Option(help="Keep frames newer than this (default: worker.frames_retention_days).")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Delete the local files of deleted jobs and (with a retention) old frames on this machine, keeping
    one thumbnail per segment."""
    from worker.retention import collect, store_lookup, store_thinner

    settings = settings_from(config, data_dir, None)
    report = collect(settings, days=days, existing=store_lookup(settings), thin=store_thinner(settings))
    out.print_json(json.dumps(report.as_dict()))
