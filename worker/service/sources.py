"""Where a job's video comes from, resolved the same way on every entry point.

* ``resolve``: a submitted path (inside the allowed roots) or http(s) URL (SSRF rules) -> ``Source``;
* ``local_path``: the file a reader opens; a URL is downloaded once per machine into
  ``DATA_DIR/sources/<job_id>/`` (size, time and SSRF limits), so FFmpeg never sees the URL;
* uploads live in the API's ``DATA_DIR/uploads/<id>/`` (``upload_dir_of`` finds the folder of a job's
  upload); a worker on another machine fetches one into its own ``DATA_DIR/sources/<job_id>/`` over a
  signed internal link (``fetch_upload``, ``worker.core.links``).
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

from worker.config import Settings
from worker.core.links import upload_link
from worker.errors import SourceError
from worker.sources import SourceUnavailable, check_url, download, resolve_local

log = logging.getLogger(__name__)
SourceKind = Literal["path", "url", "upload"]
UPLOAD_FILE = "source.video"  # the fixed name every upload is stored under (scheduler.intake)
FETCH_PAUSES_S = (1.0, 3.0)  # pauses between tries of an upload fetch the API did not answer (down, 5xx)


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
    """A local path for ``source``. A URL is downloaded once per machine (under a file lock); an upload
    kept by the API on another machine is fetched from it over a signed internal link (``fetch_upload``)."""
    if is_url(source):
        return _fetched_once(
            settings, job_id, "downloaded the source",
            lambda dest: download(
                source, dest, max_bytes=settings.limits.max_download_bytes,
                timeout_s=settings.limits.download_timeout_s, allow=settings.scheduler.allow_private_urls,
            ),
        )  # fmt: skip
    if foreign_upload(settings, source):
        secret = settings.security.internal_secret
        if settings.worker.api_url and secret is not None and secret.get_secret_value():
            return _fetched_once(settings, job_id, "fetched the upload from the API",
                                 lambda dest: fetch_upload(settings, job_id, dest))  # fmt: skip
        if not Path(source).is_file():
            raise SourceError(
                "the job's upload is kept by the API on another machine: set worker.api_url and "
                "security.internal_secret so workers fetch it",
                field="file",
            )
    return source


def _fetched_once(settings: Settings, job_id: str, what: str, fetch: Callable[[Path], Path]) -> str:
    dest = download_dir(settings, job_id)
    with _locked(dest / ".lock"):
        have = sorted(p for p in dest.iterdir() if p.is_file() and not p.name.startswith("."))
        if have:
            return str(have[0])
        path = fetch(dest)
    log.info("job %s: %s to %s", job_id, what, path)
    return str(path)


def fetch_upload(settings: Settings, job_id: str, dest: Path) -> Path:
    """The job's upload from the API (``worker.api_url``) into ``dest``: a signed link valid for minutes,
    streamed, capped at ``scheduler.max_upload_bytes``, written atomically; redirects re-checked (SSRF
    rules, only the API's own host allowed besides ``scheduler.allow_private_urls``). An API that is down
    or answers 5xx is tried ``len(FETCH_PAUSES_S) + 1`` times; any other refusal fails at once."""
    api_url = settings.worker.api_url or ""
    secret = settings.security.internal_secret
    assert secret is not None
    link = upload_link(api_url, secret.get_secret_value(), job_id, now=time.time())  # valid for all the tries
    host = urlsplit(api_url).hostname or ""
    for pause in (*FETCH_PAUSES_S, None):
        try:
            return download(
                link, dest, max_bytes=settings.scheduler.max_upload_bytes,
                timeout_s=settings.limits.download_timeout_s, allow=[host, *settings.scheduler.allow_private_urls],
            )  # fmt: skip
        except SourceUnavailable as exc:  # API down or restarting: a few short tries, then the reason
            if pause is None:
                raise SourceError(f"cannot fetch the job's upload from the API: {exc.message}", field="file") from None
            log.warning("job %s: the API did not serve the upload (%s); trying again in %.0f s", job_id, exc.message,
                        pause)  # fmt: skip
            time.sleep(pause)
        except SourceError as exc:
            raise SourceError(f"cannot fetch the job's upload from the API: {exc.message}", field="file") from None
    raise AssertionError("unreachable")


# -- uploads ----------------------------------------------------------------------------------
def uploads_dir(settings: Settings) -> Path:
    return settings.data_dir / "uploads"


def foreign_upload(settings: Settings, source: str) -> bool:
    """Whether ``source`` names an API upload (``.../uploads/<id>/source.video``) that is not a file in
    this machine's own data folder: one this worker must fetch from the API when there is no shared disk
    (machines may use the same data folder path, so a missing file counts too)."""
    if is_url(source):
        return False
    p = PurePosixPath(source)
    if p.name != UPLOAD_FILE or p.parent.parent.name != "uploads":
        return False
    return upload_dir_of(settings, source) is None or not Path(source).is_file()


def upload_dir_of(settings: Settings, source: str) -> Path | None:
    """The upload folder holding ``source`` when the job came from an upload, else None."""
    root = uploads_dir(settings).resolve()
    try:
        path = Path(source).resolve()
    except (OSError, ValueError):
        return None
    return path.parent if path.parent.parent == root else None
