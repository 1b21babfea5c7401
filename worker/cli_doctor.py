"""``framescribe doctor``: is everything the configuration needs there? One verdict line per check,
with the command that fixes it; exit 0 only when every needed check passes."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from worker.cli import ConfigOpt, DataDirOpt, DbOpt, app, out, settings_from


@app.command()
def doctor(
    online: Annotated[
        bool, typer.Option("--online", help="Also call DashScope once (unbilled) to check the key and the network.")
    ] = False,
    embedded: Annotated[
        bool, typer.Option("--embedded", help="Only what `framescribe run` needs (no broker, workers or beat).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per check.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Check Python, media libraries, data folder and store, broker, workers, beat, DashScope, MQTT, disk."""
    from worker.doctor_checks import run_checks

    settings = settings_from(config, data_dir, database_url)
    flag = "--data-dir" if data_dir is not None else None
    results = run_checks(settings, embedded=embedded, online=online, data_flag=flag)
    width = max(len(v.name) for v, _ in results)
    for verdict, took in results:
        if as_json:
            doc = {"check": verdict.name, "status": verdict.label.lower(), "needed": verdict.needed,
                   "detail": verdict.detail, "fix": verdict.fix or None, "seconds": round(took, 3)}  # fmt: skip
            out.print(json.dumps(doc, ensure_ascii=False), markup=False)
            continue
        line = f"{verdict.label:<4}  {verdict.name:<{width}}  {verdict.detail}"
        if verdict.ok is False and verdict.fix:
            line += f"  -> fix: {verdict.fix}"
        out.print(line, markup=False)
    problems = [v.name for v, _ in results if v.ok is False and v.needed]
    warnings = [v.name for v, _ in results if v.ok is False and not v.needed]
    mode = "embedded mode (framescribe run)" if embedded else "queue mode (submit, worker, beat, scheduler)"
    if not as_json:
        if problems:
            out.print(f"doctor: {len(problems)} problem(s) for {mode}: {', '.join(problems)}", markup=False)
        else:
            extra = f" ({len(warnings)} warning(s): {', '.join(warnings)})" if warnings else ""
            out.print(f"doctor: everything {mode} needs is there{extra}", markup=False)
    if problems:
        raise typer.Exit(1)
