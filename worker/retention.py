"""Frame retention on one machine's disk: old segment folders keep one thumbnail (their middle frame,
whose stored frame row stays valid) and lose the other JPEGs; old downloaded sources are deleted.

Frames live on the disk of the worker that sampled them, so every machine applies the retention
itself: each Celery worker hourly (a bootstep in ``worker.celery_app``), or ``framescribe gc`` from cron.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from worker.config import Settings

log = logging.getLogger(__name__)


@dataclass
class GcReport:
    segments: int = 0
    files_deleted: int = 0
    bytes_freed: int = 0
    sources_deleted: int = 0

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


def collect(settings: Settings, *, now: float | None = None, days: float | None = None) -> GcReport:
    """Apply the retention (``worker.frames_retention_days`` unless ``days`` is given; None = keep all)."""
    keep_days = settings.worker.frames_retention_days if days is None else days
    report = GcReport()
    if keep_days is None:
        return report
    cutoff = (time.time() if now is None else now) - keep_days * 86400
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


def collect_logged(settings: Settings) -> None:
    """``collect`` for timers: logs what it freed; a disk problem is a warning, not a crash."""
    try:
        report = collect(settings)
    except OSError as exc:
        log.warning("frame retention failed under %s: %s", settings.data_dir, exc)
        return
    if report.files_deleted or report.sources_deleted:
        log.info("frame retention: %s", report.as_dict())
