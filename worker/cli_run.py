"""``framescribe run``: the embedded mode (no broker, no API key) — sample, segment, describe, store,
summarise and export one video in this process, with a progress bar on a terminal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from worker.cli import (
    ConfigOpt,
    DataDirOpt,
    DbOpt,
    WebhookOpt,
    app,
    err,
    job_options_from,
    out,
    real_console,
    settings_from,
    with_job_options,
)
from worker.cli_jobs import write_export
from worker.core.timecode import span
from worker.errors import InputError

if TYPE_CHECKING:
    from rich.progress import Progress


@app.command()
@with_job_options
def run(
    video: Annotated[str, typer.Argument(help="The video file (or http(s) URL) to describe.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Estimate segments/frames/tokens/cost only.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Dry run: print JSON (default on a pipe).")] = False,
    webhook_url: WebhookOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Where to write the JSON export.")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    *,
    options: dict[str, Any],  # the job options (with_job_options)
) -> None:
    """Describe VIDEO in this process: sample, segment, describe, store, summarise, export JSON."""
    from worker.adapters.files import check_file
    from worker.adapters.video import open_reader
    from worker.bootstrap import drain, inline_ports
    from worker.service import jobs, sources
    from worker.service import plan as planning
    from worker.sources import check_url, redact_url

    settings = settings_from(config, data_dir, database_url)
    opts = job_options_from(options)
    if webhook_url:
        check_url(webhook_url, allow=settings.scheduler.allow_private_urls)
    if not sources.is_url(video):
        check_file(Path(video), settings.limits)
    source = (
        sources.resolve(video, settings)
        if sources.is_url(video)
        else sources.Source(str(Path(video).resolve()), Path(video).name)
    )
    if dry_run and sources.is_url(video):
        raise InputError("--dry-run needs a local file: download the URL first, or submit it with --dry-run "
                         "to the REST API")  # fmt: skip
    if dry_run:
        from worker import cli_estimate

        cli_estimate.show(cli_estimate.report(Path(video), opts, settings), out, as_json)
        return
    if not sources.is_url(video):  # a plan over the caps is refused before a job exists, as by the REST API
        with open_reader(Path(video), settings.limits, settings.sampling.reader_backend) as reader:
            info = reader.probe()
        est = planning.estimate(info, opts, settings)
        planning.check_budget(est, opts, settings)
    reporter = _Reporter(sys.stderr.isatty())
    ports = inline_ports(settings, on_event=reporter)  # the webhook, if any, is sent from this process
    job, _ = jobs.create(ports, source, opts, webhook_url=webhook_url)
    out.print(f"job {job.id}")
    try:
        with reporter:
            summary = jobs.run(ports, job.id)
    except InputError as exc:
        raise InputError(f"{redact_url(video)}: {exc.message}" if video not in exc.message else exc.message) from None
    finally:
        drain(ports)
    for row in ports.store.segment_rows(job.id):
        text = row.description if row.state in ("done", "static") else f"{row.state.upper()}: {row.error}"
        out.print(f"[{span(row.start_ms, row.end_ms)}] {text}", markup=False)
        if row.input_tokens or row.video_tokens:  # a model call: what it cost
            out.print(
                f"    usage: {row.input_tokens} input / {row.output_tokens} output / {row.video_tokens} video "
                f"tokens, {row.latency_ms} ms, {row.model}, request {row.request_id}",
                markup=False,
            )
    out.print(f"\nSummary ({summary.state}): {summary.text}", markup=False)
    usage = ports.store.usage(job.id)
    if usage["video_tokens"] or usage["input_tokens"]:
        from worker.spend import usage_line

        out.print(usage_line(usage, summary.calls, opts, settings), markup=False)
    if summary.calls_saved or summary.video_tokens_saved:
        tokens = f", ~{summary.video_tokens_saved} video tokens" if summary.video_tokens_saved else ""
        out.print(f"Saved: {summary.calls_saved} call(s) (static, reused or cached segments){tokens}")
    target = out_file or settings.data_dir / "exports" / f"{job.id}.json"
    write_export(ports.store, job.id, "json", target)
    out.print(f"JSON export: {target}")
    if summary.state == "failed":
        raise typer.Exit(1)


class _Reporter:
    """Pipeline events -> a rich progress bar on a terminal, plain log lines otherwise."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.progress: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> _Reporter:
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("segments"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[live]}", markup=False),
                console=real_console(err),
            )
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        import logging

        log = logging.getLogger("framescribe")
        if kind == "planned":
            if self.progress is not None:
                self.task = self.progress.add_task("segments", total=data["segments"], live="")
            else:
                log.info("job %s: %d segments planned", data["job_id"], data["segments"])
        elif kind == "segment_text":  # dashscope.stream: the reply as it arrives
            if self.progress is not None and self.task is not None:
                tail = " ".join(str(data["text"]).split())[-60:]
                self.progress.update(self.task, live=f"#{data['index']}: {tail}")
        elif kind in ("segment_done", "segment_failed"):
            if self.progress is not None and self.task is not None:
                self.progress.advance(self.task)
            else:
                log.info("job %s: segment %d %s", data["job_id"], data["index"], kind.split("_")[1])
