"""Stored jobs: ``framescribe jobs list``, ``show`` and ``export``. Read-only: they open the store (never
create one) and load no video, model or queue library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from worker.cli import ConfigOpt, DataDirOpt, DbOpt, _store, app, jobs_app, out, settings_from
from worker.cli_quick import job_rows, rich_jobs_table, show_lines

JobState = Literal["queued", "running", "done", "partial", "failed", "cancelled"]


@jobs_app.command("list")
def jobs_list(
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    source: Annotated[str | None, typer.Option(help="Only jobs whose source name contains this.")] = None,
    schedule: Annotated[str | None, typer.Option(help="Only jobs this schedule started (its id).")] = None,
    before: Annotated[
        str | None, typer.Option(help="Only jobs older than this one: the next page after its last id.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    stuck: Annotated[
        bool, typer.Option("--stuck", help="Only live jobs with no progress for --older-than seconds.")
    ] = False,
    older_than: Annotated[
        float | None, typer.Option(min=1, help="--stuck: idle seconds (default: worker.task_time_limit_s).")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """List jobs, newest first (--stuck: live jobs idle past their deadline, oldest first)."""
    if stuck:
        from worker.cli_store import open_store
        from worker.stuck import print_stuck

        settings = settings_from(config, data_dir, database_url)
        print_stuck(out, open_store(settings, read_only=True), older_than or settings.worker.task_time_limit_s, limit)
        return
    store = _store(config, data_dir, database_url)
    if before:
        store.get_job(before)  # a cursor that names no job is an error, not an empty page (as in the REST API)
    jobs = store.list_jobs(state=state, source=source, schedule_id=schedule, before=before, limit=limit)
    out.print(rich_jobs_table(job_rows(jobs, {job.id: store.counts(job.id) for job in jobs})))


@app.command()
def show(
    job_id: str,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Show one job: state, usage, segments and summary."""
    store = _store(config, data_dir, database_url)
    job = store.get_job(job_id)
    for line in show_lines(job, store.usage(job_id), store.segment_rows(job_id)):
        out.print(line)


@app.command()
def export(
    job_id: str,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="json, csv, vtt, srt, chapters, edl, otio or md.")
    ] = "json",
    out_file: Annotated[Path | None, typer.Option("--out", help="File to write (default: stdout).")] = None,
    min_score: Annotated[
        float | None, typer.Option("--min-score", min=0, max=1, help="edl/otio: only cuts scoring at least this.")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Export a job in a format editors and reviewers open."""
    store = _store(config, data_dir, database_url)
    store.get_job(job_id)
    from worker.core.exports import renderer

    renderer(fmt)  # an unknown format is refused before anything is written
    write_export(store, job_id, fmt, out_file, {} if min_score is None else {"min_score": str(min_score)})


def write_export(store: Any, job_id: str, fmt: str, target: Path | None, options: dict[str, str] | None = None) -> None:
    from worker.adapters.frames.local import atomic_write
    from worker.bootstrap import export_input
    from worker.core.exports import renderer

    render, _, _ = renderer(fmt)
    data = export_input(store, job_id)
    data.options.update(options or {})
    chunks = render(data)
    if target is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
        return
    atomic_write(target, chunks)  # streamed to a temp file beside the target, then renamed
