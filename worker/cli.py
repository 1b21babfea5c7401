"""The ``framescribe`` command line. ``framescribe run`` is the embedded mode: no broker, no API key."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

from worker.cli_errors import guard, run_click
from worker.cli_store import announce, open_store
from worker.core.exports import renderer
from worker.core.timecode import span
from worker.errors import InputError
from worker.logs import configure_logging

if TYPE_CHECKING:  # settings and options (pydantic-settings) load in the commands that use them: --help is quick
    from worker.config import Settings
    from worker.options import JobOptions

app = typer.Typer(
    name="framescribe",
    help="Turn video into timed, searchable descriptions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
jobs_app = typer.Typer(help="Stored jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 220)
err = Console(stderr=True, highlight=False, soft_wrap=True)
log = logging.getLogger("framescribe")
T = TypeVar("T")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config (else FRAMESCRIBE_CONFIG).")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Frames and SQLite folder (default: data/ under the current folder).")
]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL of the result store.")]


# Job options shared by `run` and `submit` (and mapped onto worker.options.JobOptions).
FpsOpt = Annotated[float | None, typer.Option(help="Frames sampled per second.")]
SegmentSecondsOpt = Annotated[float | None, typer.Option(help="Segment length in seconds.")]
OverlapOpt = Annotated[float | None, typer.Option(help="Overlap between segments.")]
StartOpt = Annotated[float | None, typer.Option(help="Start of the range (s).")]
EndOpt = Annotated[float | None, typer.Option(help="End of the range (s).")]
DescriberOpt = Annotated[str | None, typer.Option(help="auto | local | dashscope")]
ModelOpt = Annotated[str | None, typer.Option(help="DashScope model.")]
PresetOpt = Annotated[str | None, typer.Option(help="describe | surveillance | sports")]
PromptOpt = Annotated[str | None, typer.Option(help="Prompt template ($start, $end, $fps, $source…).")]
SegmenterOpt = Annotated[str | None, typer.Option(help="fixed | scene | motion | hybrid")]
MaxVideoTokensOpt = Annotated[int | None, typer.Option(help="Cap on video tokens for the job.")]
MaxCallsOpt = Annotated[int | None, typer.Option(help="Cap on model calls for the job.")]
# CLI parameter name -> JobOptions field
JOB_OPTION_ARGS = {
    "fps": "fps", "segment_seconds": "segment_seconds", "overlap_seconds": "overlap_seconds", "start": "start_s",
    "end": "end_s", "describer": "describer", "model": "model", "preset": "preset", "prompt": "prompt",
    "segmenter": "segmenter", "max_video_tokens": "max_video_tokens", "max_calls": "max_calls",
}  # fmt: skip


def settings_from(config: Path | None, data_dir: Path | None, database_url: str | None) -> Settings:
    if config is not None:
        os.environ["FRAMESCRIBE_CONFIG"] = str(config)
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url is not None:
        overrides["database_url"] = database_url
    from worker.config import load_settings

    settings = load_settings(**overrides)
    configure_logging(settings)
    announce(settings, data_dir, database_url)
    for noisy in ("httpx", "urllib3", "dashscope", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return settings


def job_options(**given: Any) -> JobOptions:
    from worker.options import JobOptions

    return JobOptions.parse({k: v for k, v in given.items() if v is not None})


def job_options_from(args: dict[str, Any]) -> JobOptions:
    """JobOptions from a command's parameters (``locals()``), by the JOB_OPTION_ARGS mapping."""
    return job_options(**{field: args.get(name) for name, field in JOB_OPTION_ARGS.items()})


@app.command()
def run(
    video: Annotated[str, typer.Argument(help="The video file (or http(s) URL) to describe.")],
    fps: FpsOpt = None,
    segment_seconds: SegmentSecondsOpt = None,
    overlap_seconds: OverlapOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    describer: DescriberOpt = None,
    model: ModelOpt = None,
    preset: PresetOpt = None,
    prompt: PromptOpt = None,
    segmenter: SegmenterOpt = None,
    max_video_tokens: MaxVideoTokensOpt = None,
    max_calls: MaxCallsOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Estimate segments/frames/tokens/cost only.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Dry run: print JSON (default on a pipe).")] = False,
    webhook_url: Annotated[str | None, typer.Option("--webhook-url", help="POSTed to when the job ends.")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Where to write the JSON export.")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Describe VIDEO in this process: sample, segment, describe, store, summarise, export JSON."""
    from worker.adapters.video import open_reader
    from worker.adapters.video.opencv import check_file
    from worker.bootstrap import drain, inline_ports
    from worker.service import jobs, sources
    from worker.service import plan as planning
    from worker.sources import check_url, redact_url

    settings = settings_from(config, data_dir, database_url)
    opts = job_options_from(locals())
    if webhook_url:
        check_url(webhook_url, allow=settings.scheduler.allow_private_urls)
    if not sources.is_url(video):
        check_file(Path(video), settings.limits)
    source = sources.resolve(video, settings) if sources.is_url(video) else sources.Source(
        str(Path(video).resolve()), Path(video).name
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
    _write_export(ports.store, job.id, "json", target)
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
            self.progress = Progress(
                TextColumn("segments"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[live]}", markup=False),
                console=err,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
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


def _write_export(
    store: Any, job_id: str, fmt: str, target: Path | None, options: dict[str, str] | None = None
) -> None:
    from worker.adapters.frames.local import atomic_write
    from worker.bootstrap import export_input

    render, _, _ = renderer(fmt)
    data = export_input(store, job_id)
    data.options.update(options or {})
    chunks = render(data)
    if target is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
        return
    atomic_write(target, chunks)  # streamed to a temp file beside the target, then renamed


def _store(config: Path | None, data_dir: Path | None, database_url: str | None) -> Any:
    """The store of a read-only command: none is created where none is found."""
    return open_store(settings_from(config, data_dir, database_url), read_only=True)


JobState = Literal["queued", "running", "done", "partial", "failed", "cancelled"]


@jobs_app.command("list")
def jobs_list(
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
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
        from worker.stuck import print_stuck

        settings = settings_from(config, data_dir, database_url)
        print_stuck(out, open_store(settings, read_only=True), older_than or settings.worker.task_time_limit_s, limit)
        return
    store = _store(config, data_dir, database_url)
    table = Table(
        Column("id", no_wrap=True, min_width=32),
        "state",
        Column("source", overflow="fold"),
        "segments",
        "created",
    )
    for job in store.list_jobs(state=state, limit=limit):
        counts = store.counts(job.id)
        done = counts.get("done", 0) + counts.get("static", 0)
        table.add_row(
            job.id,
            job.state,
            job.source_name,
            f"{done}/{job.segment_count}",
            job.created_at.isoformat(timespec="seconds"),
        )
    out.print(table)


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
    out.print(f"job {job.id}  state={job.state}  source={job.source_name}")
    if job.error:
        out.print(f"error: {job.error}")
    out.print(f"usage: {json.dumps(store.usage(job_id))}")
    for row in store.segment_rows(job_id):
        text = row.description if row.state in ("done", "static") else f"{row.state.upper()}: {row.error or ''}"
        out.print(f"[{span(row.start_ms, row.end_ms)}] {text}")
    if job.summary:
        out.print(f"\nSummary ({job.summary.get('state')}): {job.summary.get('text')}")


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
    renderer(fmt)
    _write_export(store, job_id, fmt, out_file, {} if min_score is None else {"min_score": str(min_score)})


def guarded(fn: Callable[[], T]) -> T | None:
    """Run the CLI; a FramescribeError becomes one line and exit code 2 (input, config) or 1, never a traceback."""
    return guard(fn)


def _register_command_modules() -> None:
    """Other command groups live in their own modules and register on ``app`` when imported."""
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name)


# Each module adds commands with ``@app.command()``: queue (submit/status/worker/cancel/retry),
# service (scheduler/beat), outputs (search), sample (frames only).
COMMAND_MODULES: list[str] = ["worker.cli_queue", "worker.cli_outputs", "worker.cli_service", "worker.cli_sample"]
COMMAND_MODULES.append("worker.cli_doctor")  # doctor: its own line, so other modules' additions merge cleanly
COMMAND_MODULES.append("worker.cli_ask")  # ask, reindex (issue 17)
COMMAND_MODULES.append("worker.cli_watch")  # live cameras (issue 18)


def main() -> None:
    _register_command_modules()
    guarded(lambda: run_click(lambda: app(standalone_mode=False, prog_name="framescribe")))


if __name__ == "__main__":  # python -m worker.cli: run the imported module, where command modules register
    import worker.cli

    worker.cli.main()
