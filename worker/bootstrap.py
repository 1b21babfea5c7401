"""The one place that builds real adapters from Settings (once per process)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import yaml

from worker.adapters.describers import build_describer
from worker.adapters.stores.sql import SqlResultStore
from worker.config import REPO_CONFIG, Settings
from worker.core.exports import ExportInput
from worker.core.ports import Analyser, Describer, Enqueuer, FrameWriter, VideoReader
from worker.core.prompts import DEFAULT_PRESETS, PromptSet, build_presets
from worker.errors import ConfigError
from worker.options import JobOptions
from worker.service.context import Event, Ports, quiet
from worker.service.plan import describer_kind
from worker.sources import checked_source


@functools.cache
def store_for(url: str) -> SqlResultStore:
    return SqlResultStore(url)


def build_ports(
    settings: Settings,
    on_event: Event = quiet,
    *,
    shared_limits: bool = False,
    enqueuer: Enqueuer | None = None,
    check_sources: bool = False,
) -> Ports:
    """Ports for one process. ``shared_limits`` (Celery workers): DashScope calls go through the
    cross-worker limiter in the broker's Redis (``worker.ratelimit``). ``enqueuer``: where follow-up
    work (jobs, segments, webhooks) goes; see ``celery_enqueuer`` and ``inline_ports``. ``check_sources``
    (service jobs): a local source is resolved and checked against the allowed roots again where it is
    opened."""
    store = store_for(settings.resolved_database_url)
    if shared_limits:  # a Celery worker: row changes are announced to the REST service's event streams
        from worker.adapters.queue.changes import RedisChanges, both

        on_event = both(on_event, RedisChanges(settings.broker_url))
    from worker.adapters.describers.cache import DescriptionCache
    from worker.adapters.frames.handover import LocalHandover
    from worker.adapters.frames.local import LocalFrames
    from worker.adapters.stores.blobs import SqlFrameBlobs

    sampling = settings.sampling
    frames = LocalFrames(
        settings.data_dir, sampling.max_pixels, sampling.jpeg_quality, review_side=settings.worker.review_max_side
    )
    return Ports(
        settings=settings,
        store=store,
        describer_for=describers(settings, on_event, shared_limits=shared_limits),
        frames=frames,
        handover=LocalHandover(frames),
        analyser=analyser_for(settings),
        cache=DescriptionCache(store.engine),
        reader_for=reader_factory(settings, check_sources=check_sources),
        on_event=on_event,
        prompts=load_prompts(),
        enqueuer=enqueuer,
        indexer=_indexer(store, settings),
        blobs=SqlFrameBlobs(store.engine, settings.worker.review_max_side),
    )


def describers(
    settings: Settings, on_event: Event = quiet, *, shared_limits: bool = False
) -> Callable[[JobOptions], Describer]:
    """The describer of a job's options (its kind and per-job model parameters), built on first use and
    kept (32 at most); streamed text goes to ``on_event``, calls through the shared limiter with
    ``shared_limits``."""
    cache: dict[str, Describer] = {}

    def describer_for(opts: JobOptions) -> Describer:
        kind = describer_kind(opts, settings)
        overrides = opts.dashscope_overrides() if kind == "dashscope" else {}
        key = f"{kind}:{json.dumps(overrides, sort_keys=True)}"  # per-job model / call parameters
        if key not in cache:
            if len(cache) >= 32:
                cache.pop(next(iter(cache)))
            job_settings = settings
            if overrides:
                job_settings = settings.model_copy(
                    update={"dashscope": settings.dashscope.model_copy(update=overrides)}
                )
            cache[key] = build_describer(kind, job_settings)
            if hasattr(cache[key], "listener"):  # streamed text -> on_event("segment_text", ...)
                cache[key].listener = on_event  # type: ignore[attr-defined]
            use = getattr(cache[key], "use_rate_limiter", None)
            if shared_limits and callable(use):
                from worker.ratelimit import RedisRateLimiter

                use(RedisRateLimiter.from_settings(settings))
        return cache[key]

    return describer_for


class _NoVideo:
    """The video side of ``control_ports``: those commands read no video and write no frames."""

    def __call__(self, *args: Any) -> Any:
        raise RuntimeError("this command reads no video")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"this command reads no video and writes no frames ({name})")


def control_ports(
    settings: Settings, store: SqlResultStore, *, enqueuer: Enqueuer | None = None, on_event: Event = quiet
) -> Ports:
    """Ports for the commands that queue or change a job without running it (the CLI's submit, cancel and
    retry), over the ``store`` they opened: the ``enqueuer`` and, when a cancelled job's summary asks for it,
    its model. No video reader, frame store or analysis is built (nor OpenCV or PyAV imported)."""
    none = _NoVideo()
    return Ports(
        settings=settings,
        store=store,
        describer_for=describers(settings, on_event),
        reader_for=none,
        frames=cast(FrameWriter, none),
        analyser=cast(Analyser, none),
        on_event=on_event,
        prompts=load_prompts(),
        enqueuer=enqueuer,
    )


def reader_factory(settings: Settings, *, check_sources: bool = False) -> Callable[[str], VideoReader]:
    """Readers of local videos with the configured backend and limits (``check_sources``: the path is
    checked against the allowed roots again where it is opened)."""

    def reader_for(path: str) -> VideoReader:
        from worker.adapters.video import open_reader

        source = checked_source(path, settings.allowed_roots, settings.data_dir) if check_sources else path
        return open_reader(
            source,
            settings.limits,
            settings.sampling.reader_backend,
            keyframe_tolerance=settings.sampling.keyframe_tolerance,
        )

    return reader_for


def analyser_for(settings: Settings) -> Analyser:
    """The scene/motion analysis pass and the frame hashes (OpenCV)."""
    from worker.adapters.analysis import CvAnalyser

    return CvAnalyser(settings.sampling)


def _indexer(store: SqlResultStore, settings: Settings) -> Any:
    """Search vectors of stored segments (``worker.indexing``; never raises)."""
    from worker.indexing import index_segments

    def index(job_id: str, indexes: Sequence[int], background: bool) -> None:
        index_segments(store, settings, job_id, indexes, background=background)

    return index


def celery_enqueuer(settings: Settings, queue: str | None = None) -> Enqueuer:
    """Publishes to Celery over ``settings.broker_url`` (the CLI's submit, cancel and retry)."""
    from worker.adapters.queue.celery import CeleryEnqueuer

    return CeleryEnqueuer(settings, queue=queue)


def api_enqueuer(settings: Settings) -> Enqueuer:
    """The REST API's Celery enqueuer: its own producer app, closed with the service."""
    from worker.adapters.queue.celery import CeleryEnqueuer

    return CeleryEnqueuer.private(settings)


def service_ports(
    settings: Settings,
    store: SqlResultStore,
    *,
    enqueuer: Enqueuer | None = None,
    inline: bool = False,
    on_event: Event = quiet,
) -> Ports:
    """The REST API's ports over its ``store``: ``enqueuer`` if given, else in-process (``inline``) or Celery.
    ``on_event``: told of every row change of jobs run in this process (the event streams' feed)."""
    if enqueuer is None and inline:
        ports = inline_ports(settings, on_event, check_sources=True)
    else:
        ports = build_ports(settings, on_event, check_sources=True)
    ports.store = store
    if ports.enqueuer is None:
        ports.enqueuer = enqueuer or api_enqueuer(settings)
    return ports


def inline_ports(settings: Settings, on_event: Event = quiet, *, check_sources: bool = False) -> Ports:
    """Ports whose enqueuer runs jobs, webhooks and schedule runs on threads of this process
    (``check_sources``: see ``build_ports``)."""
    from worker.adapters.queue.inline import InlineEnqueuer
    from worker.service import jobs
    from worker.service.schedules import fire
    from worker.service.webhooks import deliver_until_done

    ports = build_ports(settings, on_event, check_sources=check_sources)
    ports.enqueuer = InlineEnqueuer(
        run_job=lambda job_id: jobs.run(ports, job_id),
        send_webhook=lambda job_id: deliver_until_done(settings, job_id),
        fire_schedule=lambda schedule_id, token: fire(settings, schedule_id, token, ports.queue().enqueue_job, True),
    )
    return ports


PROMPTS_FILE = REPO_CONFIG.parent / "prompts.yaml"


def load_prompts(path: Path = PROMPTS_FILE) -> dict[str, PromptSet]:
    """Prompt templates per preset from ``configs/prompts.yaml`` over the code defaults."""
    if not path.is_file():
        return dict(DEFAULT_PRESETS)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read prompt templates {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"prompt templates {path} must map preset names to templates")
    return build_presets(data)


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


def drain(ports: Ports, timeout_s: float = 300.0) -> None:
    """Wait (bounded) for the in-process queue's pending work, such as a webhook being retried."""
    wait = getattr(ports.enqueuer, "drain", None)
    if callable(wait):
        wait(timeout_s)
