"""The quick path of ``framescribe status JOB``, ``show JOB`` and ``jobs list`` (issue 19, goal 3).

Typer coerces every parameter through a pydantic TypeAdapter, the settings model is pydantic-settings, the
store is SQLAlchemy and the table is rich: together ~0.6 s of CPU for three SELECTs. For the plain forms of
these commands (no ``--follow``, ``--stuck``, ``--help``; options as ``--name value`` or ``--name=value``)
``quick`` answers with ``sqlite3``, the settings the model gave last time for the same inputs
(``worker/settings_cache.py``), and text written as rich would write it. Anything else returns False and
the command runs through Typer as before: another kind of store, a schema not at the heads, an argument
Typer might read otherwise, text rich would change (markup, emoji codes, control characters) or a table
rich would lay out otherwise (a terminal, colour forced, a wide cell). Output, errors and exit codes are
the same either way (tests run both paths on the same stores).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

JOB_STATES = ("queued", "running", "done", "partial", "failed", "cancelled")  # cli_jobs.JobState (a test checks)
STORE_OPTIONS = {"--config": "config", "--data-dir": "data_dir", "--database-url": "database_url"}
LIST_OPTIONS = {**STORE_OPTIONS, "--state": "state", "--limit": "limit"}
# rich would change these: a markup tag ``[bold]``, an escape, an emoji code ``:smile:`` (names have a
# letter, but for a few a test checks against rich's table), control characters and tabs
_MARKUP = re.compile(r"\\|\[[a-zA-Z#/@]")
_EMOJI = re.compile(r":(\S*?)(?:-(?:emoji|text))?:")
_DIGIT_EMOJI = {"100", "1234", "+1", "-1", "__1"}
TABLE_WIDTH = 220  # worker.cli._LazyConsole: the width of a console that is not a terminal


class Fallback(Exception):
    """The quick path cannot promise Typer's output: run the command the full way."""


_NOTICE: list[str] = []  # the store notice, written once the quick path is sure to answer (or fails)


def _notice() -> None:
    sys.stderr.write("".join(_NOTICE))
    _NOTICE.clear()


def status_line(job: Any, counts: dict[str, int]) -> str:
    total = job.segment_count
    done = counts.get("done", 0) + counts.get("static", 0)
    rest = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()) if state not in ("done", "static") and n)
    line = f"{job.id} {job.state}: {done}/{total} segments done" + (f" ({rest})" if rest else "")
    return line + (f" — {job.error}" if job.error else "")


def show_lines(job: Any, usage: dict[str, int], rows: Any) -> list[str]:
    """``framescribe show``: the job, its usage, one line per segment, the summary."""
    import json

    from worker.core.timecode import span

    lines = [f"job {job.id}  state={job.state}  source={job.source_name}"]
    if job.error:
        lines.append(f"error: {job.error}")
    lines.append(f"usage: {json.dumps(usage)}")
    for row in rows:
        text = row.description if row.state in ("done", "static") else f"{row.state.upper()}: {row.error or ''}"
        lines.append(f"[{span(row.start_ms, row.end_ms)}] {text}")
    if job.summary:
        lines.append(f"\nSummary ({job.summary.get('state')}): {job.summary.get('text')}")
    return lines


def plain(text: str) -> bool:
    """True when rich prints ``text`` as it is (no markup, emoji code or control character in it)."""
    if _MARKUP.search(text) or not text.replace("\n", "").isprintable():
        return False
    return not any(re.search("[A-Za-z]", n) or n in _DIGIT_EMOJI for n in _EMOJI.findall(text))


def table(headers: list[str], rows: list[list[str]], min_widths: list[int]) -> str | None:
    """The rich Table ``jobs list`` prints (heavy head box, padding 1), when rich would lay it out so:
    every cell one column per character and the whole within the console's width; else None."""
    cells = [headers, *rows]
    if not all(c.isascii() and plain(c) and "\n" not in c for row in cells for c in row):
        return None
    widths = [max(m, *(len(row[i]) for row in cells)) for i, m in enumerate(min_widths)]
    if sum(widths) + 3 * len(widths) + 1 > TABLE_WIDTH:
        return None

    def line(left: str, fill: str, mid: str, right: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def row_line(row: list[str], bar: str) -> str:
        return bar + bar.join(f" {c.ljust(w)} " for c, w in zip(row, widths, strict=True)) + bar

    out = [line("┏", "━", "┳", "┓"), row_line(headers, "┃"), line("┡", "━", "╇", "┩")]
    out += [row_line(row, "│") for row in rows]
    return "\n".join([*out, line("└", "─", "┴", "┘")]) + "\n"


def _parse(args: list[str], names: dict[str, str], positionals: int) -> tuple[dict[str, str], list[str]]:
    given: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            rest.append(arg)
            i += 1
            continue
        name, eq, value = arg.partition("=")
        if name not in names or names[name] in given:
            raise Fallback(arg)
        if not eq:
            if i + 1 >= len(args):
                raise Fallback(arg)
            value = args[i + 1]
            i += 1
        if not value or value.startswith("-"):
            raise Fallback(arg)
        given[names[name]] = value
        i += 1
    if len(rest) != positionals:
        raise Fallback("arguments")
    return given, rest


def _write(text: str) -> None:
    _notice()
    sys.stdout.write(text)


def _open(given: dict[str, str]) -> Any:
    """The store, as ``worker.cli._store`` opens it for a read-only command (announced, never created)."""
    from worker.adapters.stores.quick_read import NotCurrent, QuickReader
    from worker.cli_store import HINT, override_source
    from worker.errors import NotFound
    from worker.settings_cache import resolve

    config, data_dir = given.get("config"), given.get("data_dir")
    database_url = given.get("database_url")
    found = resolve(Path(config) if config else None, Path(data_dir) if data_dir else None, database_url)
    if found is None:
        raise Fallback("not a SQLite store")
    source = override_source(data_dir, database_url)
    if source is not None:
        _NOTICE.append(f"framescribe: store: {found.safe_url} (from {source})\n")
    if not os.path.isfile(found.path):
        raise NotFound(f"no result store at {found.path}; {HINT}")
    try:
        return QuickReader(found.path, found.heads)
    except NotCurrent:
        raise Fallback("schema") from None


def _print_rich(lines: list[str], *, markup: bool = True) -> None:
    """Lines rich would change, printed by rich (the console every command prints with)."""
    from worker.cli import out

    _notice()
    for line in lines:
        out.print(line, markup=markup)


def print_jobs_table(rows: list[list[str]]) -> None:
    """``jobs list``: written as rich writes it when that is sure (no terminal, plain cells), else by rich."""
    headers = ["id", "state", "source", "segments", "created"]
    simple = not sys.stdout.isatty() and (sys.stdout.encoding or "").lower().startswith("utf")
    simple = simple and not any(os.environ.get(v) for v in ("FORCE_COLOR", "TTY_COMPATIBLE", "JUPYTER_COLUMNS"))
    text = table(headers, rows, [32, 0, 0, 0, 0]) if simple else None
    if text is not None:
        _write(text)
        return
    from worker.cli import out

    _notice()
    out.print(rich_jobs_table(rows))


def rich_jobs_table(rows: list[list[str]]) -> Any:
    """``jobs list`` as a rich Table (the full path's, and the quick path's when rich must lay it out)."""
    from rich.table import Column, Table

    drawn = Table(Column("id", no_wrap=True, min_width=32), "state", Column("source", overflow="fold"), "segments",
                  "created")  # fmt: skip
    for row in rows:
        drawn.add_row(*row)
    return drawn


def _status(args: list[str]) -> None:
    given, (job_id,) = _parse(args, STORE_OPTIONS, 1)
    store = _open(given)
    job = store.get_job(job_id)
    line = status_line(job, store.counts(job_id))
    if plain(line):
        _write(line + "\n")
    else:
        _print_rich([line], markup=False)


def _show(args: list[str]) -> None:
    given, (job_id,) = _parse(args, STORE_OPTIONS, 1)
    store = _open(given)
    job = store.get_job(job_id)
    lines = show_lines(job, store.usage(job_id, job.summary), store.segment_rows(job_id))
    if all(plain(line) for line in lines):
        _write("".join(line + "\n" for line in lines))
    else:
        _print_rich(lines)


def _jobs_list(args: list[str]) -> None:
    given, _ = _parse(args, LIST_OPTIONS, 0)
    state, limit = given.get("state"), given.get("limit", "20")
    if (state is not None and state not in JOB_STATES) or not re.fullmatch(r"[1-9][0-9]{0,3}", limit):
        raise Fallback("an option Typer checks")
    if int(limit) > 1000:
        raise Fallback("an option Typer checks")
    store = _open(given)
    jobs = store.list_jobs(state=state, limit=int(limit))
    print_jobs_table(job_rows(jobs, store.counts_of([job.id for job in jobs])))


def job_rows(jobs: list[Any], counts: dict[str, dict[str, int]]) -> list[list[str]]:
    """The cells of ``jobs list``: id, state, source, segments done/planned, created."""
    rows = []
    for job in jobs:
        done = counts[job.id].get("done", 0) + counts[job.id].get("static", 0)
        created = job.created_at.isoformat(timespec="seconds")
        rows.append([job.id, job.state, job.source_name, f"{done}/{job.segment_count}", created])
    return rows


COMMANDS = {("status",): _status, ("show",): _show, ("jobs", "list"): _jobs_list}


def quick(argv: list[str]) -> bool:
    """Run ``argv`` on the quick path; False (nothing written) when it must go through Typer."""
    from worker.adapters.stores.quick_read import NotCurrent
    from worker.errors import FramescribeError

    for words, command in COMMANDS.items():
        if tuple(argv[: len(words)]) == words:
            _NOTICE.clear()
            try:
                command(argv[len(words) :])
            except (Fallback, NotCurrent):
                return False
            except FramescribeError:
                _notice()  # the full path names the store before it fails
                raise
            return True
    return False
