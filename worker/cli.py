"""The ``framescribe`` command line: the Typer app, the options commands share, and how a command gets its
settings and store. The commands live in ``worker/cli_*.py`` modules that register on ``app`` when imported
(``COMMAND_MODULES``); each imports what it needs (settings, SQLAlchemy, OpenCV, PyAV, Celery, dashscope)
inside its own body, so ``framescribe --help`` and the read-only commands stay quick.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer

from worker.cli_errors import guard, run_click
from worker.cli_lazy import LazyGroup

if TYPE_CHECKING:  # settings and options (pydantic-settings) load in the commands that use them: --help is quick
    from rich.console import Console

    from worker.config import Settings
    from worker.options import JobOptions

app = typer.Typer(
    name="framescribe",
    help="Turn video into timed, searchable descriptions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: Typer's rich help renderer (rich.markdown and friends) costs 50-70 ms
    cls=LazyGroup,  # a command is imported and built only when it runs: see COMMANDS
)
jobs_app = typer.Typer(help="Stored jobs.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(jobs_app, name="jobs")
T = TypeVar("T")


class _LazyConsole:
    """A rich Console made on first use (importing rich.console costs ~20 ms that --help does not need)."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            width = None if self._stderr or sys.stdout.isatty() else 220
            self._console = Console(stderr=self._stderr, highlight=False, soft_wrap=True, width=width)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)

    def __enter__(self) -> Console:  # dunders are not looked up through __getattr__
        return self.get().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.get().__exit__(*exc)


def real_console(console: Console) -> Console:
    """The rich Console itself, for rich APIs that hold on to it (``Progress``, ``Live``)."""
    lazy: Any = console
    return lazy.get() if isinstance(lazy, _LazyConsole) else console


out = cast("Console", _LazyConsole(stderr=False))
err = cast("Console", _LazyConsole(stderr=True))

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config (else FRAMESCRIBE_CONFIG).")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Frames and SQLite folder (default: data/ under the current folder).")
]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL of the result store.")]

# What narrows `search` and `ask` alike (worker.adapters.stores.vectors.Filters reads the times).
JobFilterOpt = Annotated[str | None, typer.Option("--job", help="Only this job.")]
SourceFilterOpt = Annotated[str | None, typer.Option("--source", help="Only sources whose name matches (glob).")]
FromOpt = Annotated[str | None, typer.Option("--from", help="Only segments ending after (s, MM:SS or HH:MM:SS).")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Only segments starting before (s, MM:SS or HH:MM:SS).")]
WhereOpt = Annotated[
    list[str] | None, typer.Option("--where", help="Structured fact filter, e.g. people>=2 (repeatable).")
]


# Job options shared by `run` and `submit` (added to both by ``with_job_options``; mapped onto JobOptions).
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
WebhookOpt = Annotated[str | None, typer.Option("--webhook-url", help="POSTed to when the job ends.")]
# CLI parameter name -> (its option, the JobOptions field), in help order
JOB_OPTIONS: dict[str, tuple[Any, str]] = {
    "fps": (FpsOpt, "fps"), "segment_seconds": (SegmentSecondsOpt, "segment_seconds"),
    "overlap_seconds": (OverlapOpt, "overlap_seconds"), "start": (StartOpt, "start_s"), "end": (EndOpt, "end_s"),
    "describer": (DescriberOpt, "describer"), "model": (ModelOpt, "model"), "preset": (PresetOpt, "preset"),
    "prompt": (PromptOpt, "prompt"), "segmenter": (SegmenterOpt, "segmenter"),
    "max_video_tokens": (MaxVideoTokensOpt, "max_video_tokens"), "max_calls": (MaxCallsOpt, "max_calls"),
}  # fmt: skip


def with_job_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` (``run``, ``submit``) the job options, declared once in ``JOB_OPTIONS``: Typer sees
    them after the command's first parameter (the video), the command gets their values as one dict,
    its keyword-only parameter ``options`` (for ``job_options_from``)."""
    sig = inspect.signature(command, eval_str=True)
    first, *rest = (p for p in sig.parameters.values() if p.name != "options")
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    shared = [inspect.Parameter(name, kind, default=None, annotation=opt) for name, (opt, _) in JOB_OPTIONS.items()]

    @functools.wraps(command)
    def typer_command(**given: Any) -> None:
        command(**{k: v for k, v in given.items() if k not in JOB_OPTIONS}, options={k: given[k] for k in JOB_OPTIONS})

    params = [first, *shared, *rest]
    typer_command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    typer_command.__annotations__ = {p.name: p.annotation for p in params}
    return typer_command


def settings_from(config: Path | None, data_dir: Path | None, database_url: str | None) -> Settings:
    from worker.cli_store import announce
    from worker.logs import configure_logging
    from worker.settings_cache import build_settings

    settings = build_settings(config, data_dir, database_url)
    configure_logging(settings)
    announce(settings, data_dir, database_url)
    return settings


def job_options(**given: Any) -> JobOptions:
    from worker.options import JobOptions

    return JobOptions.parse({k: v for k, v in given.items() if v is not None})


def job_options_from(options: dict[str, Any]) -> JobOptions:
    """JobOptions from the job options' values (``with_job_options``'s ``options``), by JOB_OPTIONS."""
    return job_options(**{field: options.get(name) for name, (_, field) in JOB_OPTIONS.items()})


def _store(config: Path | None, data_dir: Path | None, database_url: str | None) -> Any:
    """The store of a read-only command: none is created where none is found."""
    return _settings_and_store(config, data_dir, database_url)[1]


def _settings_and_store(config: Path | None, data_dir: Path | None, database_url: str | None) -> tuple[Settings, Any]:
    """The settings (resolved and announced once) and the store of a read-only command that needs both."""
    from worker.cli_store import open_store

    settings = settings_from(config, data_dir, database_url)
    return settings, open_store(settings, read_only=True)


def guarded(fn: Callable[[], T]) -> T | None:
    """Run the CLI; a FramescribeError becomes one line and exit code 2 (input, config) or 1, never a traceback."""
    return guard(fn)


def _register_command_modules() -> None:
    """Other command groups live in their own modules and register on ``app`` when imported."""
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name)


# Each module adds commands with ``@app.command()``: run (embedded mode), jobs (jobs list, show, export),
# queue (submit/status/worker/cancel/retry), service (scheduler/beat), outputs (search), sample (frames only).
COMMAND_MODULES: list[str] = ["worker.cli_run", "worker.cli_jobs", "worker.cli_queue", "worker.cli_outputs"]
COMMAND_MODULES += ["worker.cli_service", "worker.cli_sample"]
COMMAND_MODULES.append("worker.cli_doctor")  # doctor: its own line, so other modules' additions merge cleanly
COMMAND_MODULES.append("worker.cli_ask")  # ask, reindex (issue 17)
COMMAND_MODULES.append("worker.cli_watch")  # live cameras (issue 18)

# The help listing, in help order: (command, module that registers it, its docstring's first sentence).
# LazyGroup lists commands from here and imports a command's module only when it runs;
# tests/unit/test_cli_lazy.py checks this table against the real commands (names, modules, help).
COMMANDS: list[tuple[str, str, str]] = [
    ("show", "worker.cli_jobs", "Show one job: state, usage, segments and summary."),
    ("export", "worker.cli_jobs", "Export a job in a format editors and reviewers open."),
    (
        "run",
        "worker.cli_run",
        "Describe VIDEO in this process: sample, segment, describe, store, summarise, export JSON.",
    ),
    ("submit", "worker.cli_queue", "Queue VIDEO for the workers and print the job id at once."),
    (
        "status",
        "worker.cli_queue",
        "Show a job's state (queued, running, done, partial, failed, cancelled) and its segment counts.",
    ),
    ("worker", "worker.cli_queue", "Start a Celery worker (same as `celery -A worker.celery_app worker`)."),
    ("cancel", "worker.cli_queue", "Stop a job's queued and running segments; finished segments are kept."),
    (
        "retry",
        "worker.cli_queue",
        "Run a failed, partial or cancelled job's failed and cancelled segments again (the job is re-planned "
        "as the REST API does: re-probe, budget re-check; finished segments are kept).",
    ),
    (
        "gc",
        "worker.cli_queue",
        "Delete the local files of deleted jobs and (with a retention) old frames on this machine, keeping "
        "one thumbnail per segment.",
    ),
    (
        "search",
        "worker.cli_outputs",
        "Search segment descriptions and structured fields across all jobs, best matches first.",
    ),
    ("scheduler", "worker.cli_service", "Start the REST API (uvicorn)."),
    ("beat", "worker.cli_service", "Run the schedule runner (Celery beat with RedBeat)."),
    (
        "sample",
        "worker.cli_sample",
        "Write the frames sampled at FPS as JPEG files named with their true times, plus frames.csv.",
    ),
    (
        "doctor",
        "worker.cli_doctor",
        "Check Python, media libraries, data folder and store, broker, workers, beat, DashScope, MQTT, disk.",
    ),
]
COMMANDS.append(
    (
        "ask",
        "worker.cli_ask",
        "Answer a question from the stored descriptions, citing the moments it relies on (checked by code).",
    )
)
COMMANDS.append(
    (
        "reindex",
        "worker.cli_ask",
        "Compute the vectors meaning-based search needs, for segments stored before (idempotent).",
    )
)
COMMANDS.append(
    (
        "watch",
        "worker.cli_watch",
        "Watch a live camera: rolling segments described as they close, alerts to MQTT/webhooks, digests.",
    )
)
COMMANDS.append(("streams", "worker.cli_watch", "List the cameras (live streams) and their status."))
COMMANDS.append(("jobs", "worker.cli_jobs", "Stored jobs."))


def main() -> None:
    from worker.cli_quick import quick  # status, show, jobs list: sqlite3 and cached settings when they can

    if not guarded(lambda: quick(sys.argv[1:])):
        guarded(lambda: run_click(lambda: app(standalone_mode=False, prog_name="framescribe")))


if __name__ == "__main__":  # python -m worker.cli: run the imported module, where command modules register
    import worker.cli

    worker.cli.main()
