"""``framescribe run --dry-run``: what a job would cost, before any call.

A scene/motion/hybrid job gets its analysis pass (local, no model call), so its segments are the real
ones (``segmentation: analysed``). On a terminal the estimate is a table; ``--json`` (or a pipe)
prints JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from worker.config import Settings
from worker.options import JobOptions


def report(video: Path, opts: JobOptions, settings: Settings) -> dict[str, Any]:
    """Probe, run the segmenter's analysis pass when it has one, estimate, check the caps. Builds only a
    reader and the analyser: no store, no describer, nothing written."""
    from worker.bootstrap import analyser_for, reader_factory
    from worker.service import plan as planning

    with reader_factory(settings)(str(video)) as reader:
        info = reader.probe()
        findings = planning.analysis_pass(analyser_for(settings), settings, reader, info, opts)
    est = planning.estimate(info, opts, settings, findings)
    planning.check_budget(est, opts, settings)
    return {"video": info.as_dict(), "estimate": est.as_dict()}


def show(data: dict[str, Any], out: Console, as_json: bool) -> None:
    if as_json or not out.is_terminal:
        out.print_json(json.dumps(data))
        return
    est, video = data["estimate"], data["video"]
    table = Table(title=f"Dry run ({est.get('model') or 'local describer, no model calls'})", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    w, h = est["frame_size"]
    rows: list[tuple[str, str]] = [
        ("video", f"{video['duration_ms'] / 1000:.1f} s, {video['width']}x{video['height']}"),
        ("segments", f"{est['segments']} ({est.get('segmentation', 'fixed')})"),
        ("frames", f"{est['frames']} at {w}x{h}"),
        ("model calls (segments)", str(est["calls"])),
        ("model calls (summary)", str(est.get("summary_calls", 0))),
        ("video tokens", f"{est['video_tokens']:,}"),
        ("input tokens (with prompts)", f"{est.get('input_tokens', 0):,}"),
        ("output tokens (at most)", f"{est.get('output_tokens_max', 0):,}"),
    ]
    cost = est.get("cost") or {}
    if cost.get("amount") is not None:
        rows.append(("cost (at most)", f"{cost['amount']:.4f} {cost['currency']}"))
    elif cost.get("note"):
        rows.append(("cost", cost["note"]))
    for what, value in rows:
        table.add_row(what, value)
    out.print(table)
