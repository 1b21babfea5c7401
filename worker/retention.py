"""Frame retention on one machine's disk: old segment folders keep one thumbnail (their middle frame,
whose stored frame row stays valid) and lose the other JPEGs; old downloaded sources are deleted.
The sweep of deleted jobs: the local frame folders, downloads and fetched uploads of jobs the store no
longer holds (``DELETE`` ran on another machine) are removed.

Frames live on the disk of the worker that sampled them, so every machine applies both itself: each
Celery worker every ``worker.sweep_interval_s`` (a bootstep in ``worker.celery_app``), or ``framescribe gc``
from cron.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from worker.config import Settings

_T = TypeVar("_T")

JOB_FOLDER = re.compile(r"[0-9a-f]{32}")
SANITY_MIN = 10  # a store holding none of this many local jobs is probably not this machine's store
Lookup = Callable[[Iterable[str]], set[str]]  # which of these job ids the store still holds
Thinner = Callable[[datetime], int]  # review copies older than this lose all but each segment's middle frame

log = logging.getLogger(__name__)


@dataclass
class GcReport:
    segments: int = 0
    files_deleted: int = 0
    bytes_freed: int = 0
    sources_deleted: int = 0
    deleted_jobs_swept: int = 0
    review_copies_deleted: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _prune_segment(folder: Path, cutoff: float, report: GcReport) -> None:
    frames = sorted(folder.glob("frame_*.jpg"))
    if len(frames) <= 1 or max(f.stat().st_mtime for f in frames) > cutoff:
        return
    keep = frames[len(frames) // 2]
    for frame in frames:
        if frame == keep:
            continue
        size = frame.stat().st_size
        frame.unlink(missing_ok=True)
        report.files_deleted += 1
        report.bytes_freed += size
    report.segments += 1


def collect(
    settings: Settings,
    *,
    now: float | None = None,
    days: float | None = None,
    existing: Lookup | None = None,
    thin: Thinner | None = None,
) -> GcReport:
    """Sweep the local files of deleted jobs (with ``existing``, a store lookup), then apply the retention
    (``worker.frames_retention_days`` unless ``days`` is given; None = keep all) to this disk and, with
    ``thin``, to the review copies in the store."""
    keep_days = settings.worker.frames_retention_days if days is None else days
    report = GcReport()
    if existing is not None:
        sweep_deleted(settings, existing, report)
    if keep_days is None:
        return report
    cutoff = (time.time() if now is None else now) - keep_days * 86400
    if thin is not None:
        report.review_copies_deleted = thin(datetime.fromtimestamp(cutoff, UTC))
    jobs = settings.data_dir / "jobs"
    for job in sorted(jobs.iterdir()) if jobs.is_dir() else ():
        if not job.is_dir():
            continue
        for seg in sorted(job.iterdir()):
            if seg.is_dir() and seg.name.startswith("seg_"):
                _prune_segment(seg, cutoff, report)
    sources = settings.data_dir / "sources"
    for src in sorted(sources.iterdir()) if sources.is_dir() else ():
        if src.is_dir() and src.stat().st_mtime <= cutoff:
            shutil.rmtree(src, ignore_errors=True)
            report.sources_deleted += 1
    return report


def sweep_deleted(settings: Settings, existing: Lookup, report: GcReport) -> None:
    """Remove ``jobs/<id>`` and ``sources/<id>`` folders of jobs the store no longer holds. Job rows are
    written before any file of theirs, so a folder without a row is a deleted job's. A store that holds
    none of ``SANITY_MIN`` or more local jobs is taken for the wrong store: nothing is removed."""
    folders: dict[str, list[Path]] = {}
    for parent in (settings.data_dir / "jobs", settings.data_dir / "sources"):
        for folder in parent.iterdir() if parent.is_dir() else ():
            if folder.is_dir() and JOB_FOLDER.fullmatch(folder.name):
                folders.setdefault(folder.name, []).append(folder)
    if not folders:
        return
    alive = existing(folders)
    if not alive and len(folders) >= SANITY_MIN:
        log.warning("the store holds none of the %d jobs under %s: not sweeping (is it this machine's store?)",
                    len(folders), settings.data_dir)  # fmt: skip
        return
    for job_id, paths in folders.items():
        if job_id in alive:
            continue
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
        report.deleted_jobs_swept += 1


def store_lookup(settings: Settings) -> Lookup:
    """``existing`` over the configured store, on an engine of its own per call (safe in a forking
    worker's parent process)."""
    from worker.adapters.stores.blobs import existing_jobs

    def lookup(job_ids: Iterable[str]) -> set[str]:
        return _on_own_engine(settings, lambda engine: existing_jobs(engine, job_ids))

    return lookup


def store_thinner(settings: Settings) -> Thinner:
    """``thin`` over the configured store (every machine may run it: it is idempotent)."""
    from worker.adapters.stores.blobs import thin

    return lambda older_than: _on_own_engine(settings, lambda engine: thin(engine, older_than))


def _on_own_engine(settings: Settings, work: Callable[[Any], _T]) -> _T:
    from worker.adapters.stores.sql import build_engine

    engine = build_engine(settings.resolved_database_url)
    try:
        return work(engine)
    finally:
        engine.dispose()


def collect_logged(settings: Settings) -> None:
    """``collect`` (with the sweep of deleted jobs) for timers: logs what it freed; a disk or store
    problem is a warning, not a crash."""
    try:
        report = collect(settings, existing=store_lookup(settings), thin=store_thinner(settings))
    except Exception as exc:  # OSError, or the store (SQLAlchemyError) being down: the next run tries again
        log.warning("frame retention failed under %s: %s", settings.data_dir, exc.__class__.__name__)
        return
    if any(report.as_dict().values()):
        log.info("frame retention: %s", report.as_dict())
