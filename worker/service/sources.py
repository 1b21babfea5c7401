"""Where a job's video comes from, resolved the same way on every entry point.

* ``resolve``: a submitted path (inside the allowed roots) or http(s) URL (SSRF rules) -> ``Source``;
* ``local_path``: the file a reader opens; a URL is downloaded once per machine into
  ``DATA_DIR/sources/<job_id>/`` (size, time and SSRF limits), so FFmpeg never sees the URL;
* uploads live in ``DATA_DIR/uploads/<id>/`` (``upload_dir_of`` finds the folder of a job's upload).
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from worker.config import Settings
from worker.errors import SourceError
from worker.sources import check_url, download, resolve_local

log = logging.getLogger(__name__)
SourceKind = Literal["path", "url", "upload"]


@dataclass(frozen=True, slots=True)
class Source:
    location: str  # a real path or an http(s) URL
    name: str  # shown to people


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def url_name(url: str) -> str:
    return url.split("?", 1)[0][:512]


def resolve(video: str, settings: Settings, *, field: str = "path") -> Source:
    """A path or URL as a job source, checked as the worker will check it.

    Without allowed roots a path is the submitting user's own file (one machine or shared storage)."""
    if is_url(video):
        check_url(video, settings.scheduler.allow_private_urls)
        return Source(video, video.rsplit("/", 1)[-1].split("?", 1)[0] or video)
    if settings.allowed_roots:
        real = resolve_local(video, settings.allowed_roots)
    else:
        real = Path(video).resolve()
        if not real.is_file():
            raise SourceError(f"{video}: no such file", field=field)
    return Source(str(real), real.name)


def kind_of(source: str, settings: Settings) -> SourceKind:
    if is_url(source):
        return "url"
    return "upload" if upload_dir_of(settings, source) else "path"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def download_dir(settings: Settings, job_id: str) -> Path:
    return settings.data_dir / "sources" / job_id


def local_path(settings: Settings, job_id: str, source: str) -> str:
    """A local path for ``source``; a URL is downloaded once per machine (under a file lock)."""
    if not is_url(source):
        return source
    dest = download_dir(settings, job_id)
    with _locked(dest / ".lock"):
        have = sorted(p for p in dest.iterdir() if p.is_file() and not p.name.startswith("."))
        if have:
            return str(have[0])
        path = download(
            source,
            dest,
            max_bytes=settings.limits.max_download_bytes,
            timeout_s=settings.limits.download_timeout_s,
            allow=settings.scheduler.allow_private_urls,
        )
    log.info("job %s: downloaded the source to %s", job_id, path)
    return str(path)


# -- uploads ----------------------------------------------------------------------------------
def uploads_dir(settings: Settings) -> Path:
    return settings.data_dir / "uploads"


def upload_dir_of(settings: Settings, source: str) -> Path | None:
    """The upload folder holding ``source`` when the job came from an upload, else None."""
    root = uploads_dir(settings).resolve()
    try:
        path = Path(source).resolve()
    except (OSError, ValueError):
        return None
    return path.parent if path.parent.parent == root else None
