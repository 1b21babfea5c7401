"""Schedule runs: one job per new file of a watched folder, or one job per run of a URL schedule.

``fire(settings, schedule_id, token, enqueue)`` (new = path + size + mtime not seen by this schedule; the
``schedule_seen_files`` unique constraint makes a double fire harmless); a URL run is keyed by ``token``
(the Celery task id), so a redelivered message makes no second job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from worker.adapters.stores.schedules import Schedule, ScheduleStore
from worker.adapters.stores.sql import SqlResultStore
from worker.config import Settings
from worker.core.newfiles import FileFacts, check_glob, new_files
from worker.errors import FramescribeError, NotFound, SourceError
from worker.options import JobOptions
from worker.sources import check_url, resolve_inside, resolve_local

log = logging.getLogger(__name__)

MAX_SCAN = 100_000  # entries one run may look at; a bigger tree is scanned partially (and logged)
SCAN_CHUNK = 500


def store_of(settings: Settings) -> SqlResultStore:
    from worker.bootstrap import store_for

    return store_for(settings.resolved_database_url)


# -- schedules --------------------------------------------------------------------------------
def resolve_folder(folder: str, roots: list[Path]) -> Path:
    """The real path of a watched folder, refused when it is (now) outside the allowed roots."""
    real = resolve_inside(folder, roots, noun="folder", kind="folder", field="source.folder")
    if not real.is_dir():
        raise SourceError(f"{folder}: not a folder", field="source.folder")
    return real


def scan(folder: Path, pattern: str, roots: list[Path]) -> Iterator[FileFacts]:
    """Regular files matching ``pattern`` under ``folder`` that resolve inside the roots (lazily)."""
    for n, candidate in enumerate(folder.glob(pattern)):
        if n >= MAX_SCAN:
            log.warning("%s: more than %d entries match %r; the rest wait for the next run", folder, MAX_SCAN, pattern)
            return
        try:
            real = resolve_local(str(candidate), roots)
            st = real.stat()
        except (SourceError, OSError):
            continue  # a symlink out of the roots, a FIFO, a directory, a file that just vanished
        yield FileFacts(str(real), st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class FireResult:
    schedule_id: str
    jobs: tuple[str, ...]
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"schedule_id": self.schedule_id, "jobs": list(self.jobs), "error": self.error}


def _fire_folder(
    settings: Settings, sched: Schedule, store: SqlResultStore, schedules: ScheduleStore, enqueue: Callable[[str], None]
) -> list[str]:
    roots = list(settings.allowed_roots)
    folder = resolve_folder(sched.source, roots)
    candidates = scan(folder, check_glob(sched.glob), roots)
    options = JobOptions.parse(sched.options).stored()
    made: list[str] = []
    while len(made) < sched.max_files_per_run and (chunk := list(islice(candidates, SCAN_CHUNK))):
        seen = schedules.seen_keys(sched.id, (f.key for f in chunk))
        fresh = new_files(
            chunk, seen, now_ns=time.time_ns(), settle_s=sched.settle_s, limit=sched.max_files_per_run - len(made)
        )
        for f in fresh:
            if not schedules.claim_file(sched.id, f.key, f.path, f.size, f.mtime_ns):
                continue  # a concurrent run took it
            try:
                job, created = store.create_job(
                    f.path, Path(f.path).name, options, idempotency_key=f"sched:{sched.id}:{f.key}",
                    schedule_id=sched.id, webhook_url=sched.webhook_url,
                )  # fmt: skip
            except Exception:
                schedules.release_file(sched.id, f.key)
                raise
            schedules.set_file_job(sched.id, f.key, job.id)
            if created:
                enqueue(job.id)
                made.append(job.id)
    return made


def _fire_url(
    settings: Settings,
    sched: Schedule,
    store: SqlResultStore,
    token: str,
    enqueue: Callable[[str], None],
) -> list[str]:
    check_url(sched.source, settings.scheduler.allow_private_urls)
    options = JobOptions.parse(sched.options).stored()
    job, created = store.create_job(
        sched.source, sched.source.split("?", 1)[0][:512], options, idempotency_key=f"sched:{sched.id}:run:{token}",
        schedule_id=sched.id, webhook_url=sched.webhook_url,
    )  # fmt: skip
    if created:
        enqueue(job.id)
        return [job.id]
    return []


def fire(
    settings: Settings, schedule_id: str, token: str, enqueue: Callable[[str], None], manual: bool = False
) -> FireResult:
    """One run of a schedule. ``token`` identifies the run (the Celery task id): a redelivered run
    reuses it and so creates no second URL job; folder runs are deduplicated per file."""
    store = store_of(settings)
    schedules = ScheduleStore(store.engine)
    try:
        sched = schedules.get(schedule_id)
    except NotFound:
        log.info("schedule %s no longer exists; nothing to run", schedule_id)
        return FireResult(schedule_id, (), "deleted")
    if not sched.enabled and not manual:
        return FireResult(schedule_id, (), "disabled")
    error: str | None = None
    made: list[str] = []
    try:
        if sched.source_kind == "folder":
            made = _fire_folder(settings, sched, store, schedules, enqueue)
        else:
            made = _fire_url(settings, sched, store, token, enqueue)
    except FramescribeError as exc:
        error = exc.message
        log.warning("schedule %s (%s): %s", sched.id, sched.name, exc.message)
    schedules.mark_run(schedule_id, jobs_created=len(made), error=error)
    if made:
        log.info("schedule %s (%s): %d new job(s)", sched.id, sched.name, len(made))
    return FireResult(schedule_id, tuple(made), error)
