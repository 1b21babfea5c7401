"""Exports: each format renders a job as a stream of text chunks from plain data (no I/O).

``ExportInput`` holds the job as a dict and an iterator of segment dicts (each with its frames), so
a two-hour job is rendered without holding all segments in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ExportInput:
    job: dict[str, Any]
    segments: Iterable[dict[str, Any]]
    options: dict[str, str] = field(default_factory=dict)  # per-format knobs, e.g. edl/otio ``min_score``


def public_input(data: ExportInput, frame_url: Callable[[int, int], str]) -> ExportInput:
    """The export as the API serves it: no absolute server paths (frames become API links, the source its
    file name) and no URL credentials or query strings (signed URLs)."""
    from worker.core.redact import public_job, redact_text

    def segments() -> Iterator[dict[str, Any]]:
        for seg in data.segments:
            seg = dict(seg)
            if isinstance(seg.get("error"), str):
                seg["error"] = redact_text(seg["error"])
            frames = seg.get("frames")
            if isinstance(frames, list):
                seg["frames"] = [
                    {k: v for k, v in f.items() if k != "path"} | {"url": frame_url(int(seg["index"]), int(f["n"]))}
                    for f in frames
                    if isinstance(f, dict)
                ]
            yield seg

    return ExportInput(job=public_job(data.job), segments=segments(), options=data.options)


Renderer = Callable[[ExportInput], Iterator[str]]
FORMATS: dict[str, tuple[Renderer, str, str]] = {}  # name -> (render, media type, file extension)


def register(name: str, media_type: str, ext: str) -> Callable[[Renderer], Renderer]:
    def deco(fn: Renderer) -> Renderer:
        FORMATS[name] = (fn, media_type, ext)
        return fn

    return deco


def renderer(name: str) -> tuple[Renderer, str, str]:
    from worker.core.exports import (  # noqa: F401  (each module registers its formats)
        csv_export,
        edl,
        json_export,
        markdown,
        otio,
        subtitles,
    )

    try:
        return FORMATS[name]
    except KeyError:
        from worker.errors import InputError

        raise InputError(
            f"unknown export format '{name}'; choose one of {', '.join(sorted(FORMATS))}", field="format"
        ) from None
