"""Digests: every ``digest_seconds`` of wall-clock time, a summary of that period's segments (summary of
summaries), stored in ``live_digests``, exported as JSON under ``<data_dir>/live/<camera>/digests/`` and
sent like an alert (``framescribe/<camera>/digest``). Periods are UTC-aligned; each is made once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from worker.adapters.frames.local import atomic_write
from worker.adapters.stores.sql import now
from worker.core.models import SegmentRow
from worker.core.summary import build_summary
from worker.live.schema import DigestRow
from worker.summarise import summarise

if TYPE_CHECKING:
    from worker.live.watcher import Watcher

MAX_PERIODS = 48  # periods caught up in one go after a long outage


def due(w: Watcher, now_utc_ms: int, *, final: bool = False) -> None:
    """Make every digest whose period ended by ``now_utc_ms`` (and, when ``final``, the open one)."""
    assert w.opts.digest_seconds
    period = round(w.opts.digest_seconds * 1000)
    done_until = w.live.last_digest_end(w.job_id)
    first = next(w.live.segments(w.job_id, done_until), None)
    if first is None:
        return
    start = max(done_until, first.utc_start_ms - first.utc_start_ms % period)
    for _ in range(MAX_PERIODS):
        end = start - start % period + period
        if end > now_utc_ms and not (final and start < now_utc_ms):
            return
        make(w, start, min(end, now_utc_ms) if end > now_utc_ms else end)
        start = end


def _rows(w: Watcher, start: int, end: int) -> Iterator[SegmentRow]:
    wanted = {r.segment_index for r in w.live.segments(w.job_id, start, end)}
    return (r for r in w.ports.store.segment_rows(w.job_id) if r.index in wanted)


def make(w: Watcher, start: int, end: int) -> None:
    from worker.live.common import iso

    count = sum(1 for _ in _rows(w, start, end))
    model = None
    job = w.ports.store.get_job(w.job_id)
    from worker.service import pipeline

    opts = pipeline.options_of(job)
    if pipeline.describer_kind(opts, w.settings) == "dashscope":
        model = w.ports.describer_for(opts)
    if callable(getattr(model, "complete", None)):
        preset = w.ports.prompts.get(opts.preset or w.settings.describer.preset) or w.ports.prompts["describe"]
        summary = summarise(
            lambda: _rows(w, start, end),
            end - start,
            None,
            model=model,  # type: ignore[arg-type]  # a describer with complete() is a TextModel
            template=preset.summary,
            source_name=f"camera {w.name}",
            batch_tokens=w.settings.dashscope.summary_batch_tokens,
            job_id=w.job_id,
        )
    else:
        summary = build_summary(_rows(w, start, end), end - start)
    key = f"{w.job_id}:digest:{start}"
    payload = {
        "type": "digest",
        "dedup_key": key,
        "camera": w.name,
        "job_id": w.job_id,
        "start_utc": iso(start),
        "end_utc": iso(end),
        "segments": count,
        "text": summary.text,
        "summary": summary.as_dict(),
    }
    stamp = datetime.fromtimestamp(start / 1000, UTC).strftime("%Y%m%dT%H%M%S")
    path = w.settings.data_dir / "live" / w.name / "digests" / f"{stamp}-{start}.json"
    atomic_write(path, json.dumps(payload, ensure_ascii=False, indent=2).encode())
    row = DigestRow(
        job_id=w.job_id,
        period_start_ms=start,
        period_end_ms=end,
        text=summary.text,
        segments=count,
        path=str(path),
        created_at=now(),
    )
    if w.live.add_digest(row):
        w.counters.digests += 1
        payload["path"] = str(path)
        w.live.enqueue(key, w.name, "digest", payload, w.opts.mqtt, w.opts.webhook_url)
        w.notifier.kick()
