"""Output commands on ``worker.cli.app``: ``search`` (full-text over every job's segments)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from worker.cli import (
    ConfigOpt,
    DataDirOpt,
    DbOpt,
    FromOpt,
    JobFilterOpt,
    SourceFilterOpt,
    ToOpt,
    WhereOpt,
    _settings_and_store,
    app,
    out,
)
from worker.core.timecode import span


def _marked(snippet: str, marks: tuple[tuple[int, int], ...]) -> str:
    """The snippet as rich markup with the matched words in bold; the text itself is escaped."""
    from rich.markup import escape

    parts, pos = [], 0
    for start, end in marks:
        parts.append(escape(snippet[pos:start]))
        parts.append(f"[bold yellow]{escape(snippet[start:end])}[/]")
        pos = end
    parts.append(escape(snippet[pos:]))
    return "".join(parts)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help='Words or a sentence, e.g. "red car" ("" with --where only).')] = "",
    job: JobFilterOpt = None,
    source: SourceFilterOpt = None,
    from_t: FromOpt = None,
    to_t: ToOpt = None,
    where: WhereOpt = None,
    semantic: Annotated[
        bool, typer.Option("--semantic", help="Meaning-based search (same as --mode semantic).")
    ] = False,
    mode: Annotated[
        str | None, typer.Option("--mode", help="text | semantic | hybrid (default: hybrid when vectors exist).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    offset: Annotated[int, typer.Option(min=0, max=10_000, help="Skip this many hits (the next page).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per hit.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Search segment descriptions and structured fields across all jobs, best matches first."""
    from worker.adapters.stores.vectors import Filters
    from worker.core.where import parse_where
    from worker.indexing import embedder_for
    from worker.retrieval import search as run_search

    settings, store = _settings_and_store(config, data_dir, database_url)
    chosen = "semantic" if semantic else mode
    embedder = embedder_for(settings) if chosen != "text" else None
    hits = run_search(
        store,
        query,
        mode=chosen,  # type: ignore[arg-type]
        filters=Filters.of(job=job, source=source, from_=from_t, to=to_t, flag="--"),
        where=parse_where(where),
        embedder=embedder,
        limit=limit,
        offset=offset,
    )
    if as_json:
        for hit in hits:
            out.print(json.dumps(hit.as_dict(), ensure_ascii=False), markup=False)
        return
    if not hits:
        out.print(f"no segment matches {query!r}", markup=False)
        return
    from rich.markup import escape
    from rich.table import Column, Table

    table = Table(Column("job", no_wrap=True), Column("source", overflow="fold"), "time", "match")
    for hit in hits:
        when = span(hit.start_ms, hit.end_ms)
        table.add_row(hit.job_id, escape(hit.source_name), when, _marked(hit.snippet, hit.marks))
    out.print(table)
