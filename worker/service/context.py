"""What a job needs from the outside world: the ports, built by ``worker.bootstrap`` (fakes in tests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.config import Settings
from worker.core.models import Job
from worker.core.ports import (
    Analyser,
    Describer,
    DescriptionCache,
    Enqueuer,
    FrameBlobs,
    FrameHandover,
    FrameWriter,
    ResultStore,
    VideoReader,
)
from worker.core.prompts import DEFAULT_PRESETS, PromptSet
from worker.errors import QueueUnavailable
from worker.options import JobOptions
from worker.service.sources import local_path

Event = Callable[[str, dict[str, Any]], None]


def quiet(kind: str, data: dict[str, Any]) -> None:
    return None


@dataclass
class Ports:
    """What a job needs from the outside world; built by ``worker.bootstrap``."""

    settings: Settings
    store: ResultStore
    describer_for: Callable[[JobOptions], Describer]
    reader_for: Callable[[str], VideoReader]
    frames: FrameWriter
    analyser: Analyser
    cache: DescriptionCache | None = None  # None: no description cache and no in-job reuse
    on_event: Event = quiet
    prompts: dict[str, PromptSet] = field(default_factory=lambda: dict(DEFAULT_PRESETS))
    enqueuer: Enqueuer | None = None
    indexer: Callable[[str, Sequence[int], bool], None] | None = None  # (job, segments, background): search vectors
    blobs: FrameBlobs | None = None  # review-size frame copies in the store (served by any machine)
    handover: FrameHandover | None = None  # frames the analysis pass writes for the segments (None: they decode)

    def queue(self) -> Enqueuer:
        if self.enqueuer is None:
            raise QueueUnavailable("no job queue is configured in this process")
        return self.enqueuer

    def index(self, job_id: str, indexes: Sequence[int], background: bool = False) -> None:
        """Compute stored segments' search vectors (meaning-based search), when an indexer is wired."""
        if self.indexer is not None:
            self.indexer(job_id, indexes, background)

    def open_source(self, job: Job) -> VideoReader:
        """A reader of the job's video (a URL source, or an upload on another machine, is fetched first,
        once per machine)."""
        return self.reader_for(local_path(self.settings, job.id, job.source))
