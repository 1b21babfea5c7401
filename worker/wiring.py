"""The one place that builds real adapters from Settings (once per process)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from worker.adapters.describers import build_describer
from worker.adapters.stores.sql import SqlResultStore
from worker.adapters.video.opencv import OpenCVReader
from worker.config import Settings
from worker.core.exports import ExportInput
from worker.core.ports import Describer
from worker.options import JobOptions
from worker.pipeline import Event, Ports, _quiet, describer_kind


@functools.cache
def store_for(url: str) -> SqlResultStore:
    return SqlResultStore(url)


def build_ports(settings: Settings, on_event: Event = _quiet) -> Ports:
    store = store_for(settings.resolved_database_url)
    cache: dict[str, Describer] = {}

    def describer_for(opts: JobOptions) -> Describer:
        kind = describer_kind(opts, settings)
        if kind not in cache:
            cache[kind] = build_describer(kind, settings)
        return cache[kind]

    return Ports(
        settings=settings,
        store=store,
        describer_for=describer_for,
        reader_for=lambda path: OpenCVReader(path, settings.limits),
        on_event=on_event,
    )


def export_input(store: SqlResultStore, job_id: str) -> ExportInput:
    """The job as plain data for the exporters; segments (with frames) are read lazily."""
    job = store.get_job(job_id)
    head: dict[str, Any] = job.as_dict()
    head["summary"] = job.summary
    head["usage"] = store.usage(job_id)

    def segments() -> Iterator[dict[str, Any]]:
        for row in store.segment_rows(job_id):
            seg = asdict(row)
            seg["frames"] = [asdict(f) for f in store.frames(job_id, row.index)]
            yield seg

    return ExportInput(job=head, segments=segments())
