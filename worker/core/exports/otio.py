"""``otio``: an OpenTimelineIO timeline (one video track, a clip per cut), written as OTIO JSON, streamed.

Clips come from the same cuts as the EDL (``min_score`` picks highlights); each keeps the segment's
description and structured fields in ``metadata.framescribe``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from worker.core.exports import ExportInput, register
from worker.core.exports.edl import rates
from worker.core.exports.text import Cut, cuts, min_score_option


def _rt(value: float, rate: float) -> dict[str, Any]:
    return {"OTIO_SCHEMA": "RationalTime.1", "rate": rate, "value": float(value)}


def _range(start: float, duration: float, rate: float) -> dict[str, Any]:
    return {"OTIO_SCHEMA": "TimeRange.1", "start_time": _rt(start, rate), "duration": _rt(duration, rate)}


def target_url(source: str) -> str:
    if source.startswith(("http://", "https://", "file://")):
        return source
    if not source.startswith("/"):  # a bare file name (API exports carry no server path): relative reference
        return quote(source)
    return "file://" + quote(source)


def _clip(cut: Cut, fps: float, ref: dict[str, Any]) -> dict[str, Any]:
    start = round(cut.start_ms * fps / 1000)
    dur = max(1, round(cut.end_ms * fps / 1000) - start)
    return {
        "OTIO_SCHEMA": "Clip.2",
        "name": cut.title,
        "metadata": {"framescribe": {"segment": cut.index, "start_ms": cut.start_ms, "end_ms": cut.end_ms,
                                     "score": cut.score}},
        "source_range": _range(start, dur, fps),
        "media_references": {"DEFAULT_MEDIA": ref},
        "active_media_reference_key": "DEFAULT_MEDIA",
    }  # fmt: skip


@register("otio", "application/vnd.opentimelineio+json", "otio")
def render(data: ExportInput) -> Iterator[str]:
    min_score = min_score_option(data.options)
    job = data.job
    fps, _ = rates(job)
    duration_ms = int((job.get("video") or {}).get("duration_ms") or 0)
    name = str(job.get("source_name") or job.get("id") or "framescribe")
    ref = {
        "OTIO_SCHEMA": "ExternalReference.1",
        "name": name,
        "target_url": target_url(str(job.get("source") or name)),
        "available_range": _range(0, round(duration_ms * fps / 1000), fps) if duration_ms else None,
    }
    head = {"OTIO_SCHEMA": "Timeline.1", "name": name, "metadata": {"framescribe": {"job_id": job.get("id")}}}
    yield json.dumps(head, ensure_ascii=False)[:-1]
    yield ', "tracks": {"OTIO_SCHEMA": "Stack.1", "name": "tracks", "children": [{"OTIO_SCHEMA": "Track.1", '
    yield '"name": "framescribe", "kind": "Video", "children": ['
    for i, cut in enumerate(cuts(data.segments, min_score)):
        yield ("," if i else "") + "\n" + json.dumps(_clip(cut, fps, ref), ensure_ascii=False)
    yield "\n]}]}}\n"
