"""``json``: the complete job (job, summary, usage, segments with frames), streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator

from worker.core.exports import ExportInput, register


@register("json", "application/json", "json")
def render(data: ExportInput) -> Iterator[str]:
    head = json.dumps(data.job, ensure_ascii=False, default=str)
    yield head[:-1] + (', "segments": [' if head != "{}" else '{"segments": [')
    for i, seg in enumerate(data.segments):
        yield ("," if i else "") + "\n  " + json.dumps(seg, ensure_ascii=False, default=str)
    yield "\n]}\n"
