"""``/v1/jobs/{id}/export`` (every format, streamed) and ``/v1/jobs/{id}/source`` (the video, with Range).

The review page's ``<video>`` cannot send an Authorization header, so ``/source-url`` hands an
authenticated caller a short-lived signed link (HMAC of job id and expiry, keyed by
``security.source_link_secret`` or a random per-process secret); ``/source`` accepts that signature
or the usual Bearer key. Only sources the server may read are served, only as the video type their
bytes name: a path inside the allowed roots (checked again now) or the job's own upload.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from scheduler import intake
from scheduler.api.deps import ReadAccess, SettingsDep, StoreDep, authenticate
from scheduler.api.errors import ApiError
from scheduler.api.models import ErrorBody
from worker.adapters.stores.sql import Job
from worker.config import Settings
from worker.core.exports import public_input, renderer
from worker.errors import FramescribeError
from worker.sources import resolve_local

router = APIRouter(prefix="/v1/jobs", tags=["exports"])
JOB_ID = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$", description="A job id (32 hex characters).")]
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 422)}
SIGNED_URL_TTL_S = 6 * 3600
EXPORT_TYPES = ("application/json", "text/csv", "text/vtt", "application/x-subrip", "text/plain", "text/markdown",
                "application/vnd.opentimelineio+json")  # fmt: skip


def download_name(job: Job, ext: str) -> str:
    """``<source stem>-<job id prefix>.<ext>``, ASCII-safe for the plain ``filename`` parameter."""
    stem = Path(job.source_name or job.id).stem or "job"
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    ascii_stem = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_stem).strip("._") or "job"
    return f"{ascii_stem[:80]}-{job.id[:8]}.{ext}"


def disposition(job: Job, ext: str) -> str:
    stem = Path(job.source_name or job.id).stem or "job"
    utf8 = quote(f"{stem[:80]}-{job.id[:8]}.{ext}", safe="")
    return f"attachment; filename=\"{download_name(job, ext)}\"; filename*=UTF-8''{utf8}"


@router.get(
    "/{job_id}/export",
    responses={200: {"content": {t: {} for t in EXPORT_TYPES}}, **ERRORS},
    summary="Export a job: json, csv, vtt, srt, chapters, edl, otio or md (streamed)",
)
async def export(
    job_id: JOB_ID,
    store: StoreDep,
    _: ReadAccess,
    format: Annotated[str, Query(max_length=16, description="json csv vtt srt chapters edl otio md")] = "json",
    min_score: Annotated[
        str | None,
        Query(max_length=16, description="edl/otio: keep cuts scoring at least this (0–1)"),
    ] = None,
) -> StreamingResponse:
    from worker.bootstrap import export_input

    render, media_type, ext = renderer(format)
    job = await run_in_threadpool(store.get_job, job_id)
    data = public_input(
        await run_in_threadpool(export_input, store, job_id),
        lambda seg, n: f"/v1/jobs/{job_id}/frames/{seg}/{n}.jpg",
    )
    if min_score is not None:
        data = replace(data, options={"min_score": min_score})
    chunks = render(data)
    # The first chunk is rendered before the response starts, so a bad option is a 422, not a cut stream.
    first = await run_in_threadpool(next, chunks, "")

    def body() -> Iterator[bytes]:
        yield first.encode()
        for chunk in chunks:
            yield chunk.encode()

    headers = {"Content-Disposition": disposition(job, ext), "Cache-Control": "no-store"}
    return StreamingResponse(body(), media_type=media_type, headers=headers)


# -- the source video -------------------------------------------------------------------------
class SourceLink(BaseModel):
    url: str
    media_type: str
    expires_at: int | None


_PROCESS_SECRET = secrets.token_bytes(32)  # used when security.source_link_secret is unset


def _secret(settings: Settings) -> bytes | None:
    """Signing key: ``security.source_link_secret`` or a random per-process secret (never derived from
    the API keys); None when no key is configured (loopback only, links need no signature)."""
    if not (settings.api_keys or settings.read_only_api_keys):
        return None
    configured = settings.security.source_link_secret
    if configured is not None and configured.get_secret_value():
        return hashlib.sha256(b"framescribe-source-url\x00" + configured.get_secret_value().encode()).digest()
    return _PROCESS_SECRET


def sign(secret: bytes, job_id: str, exp: int) -> str:
    return hmac.new(secret, f"{job_id}:{exp}".encode(), hashlib.sha256).hexdigest()


def playable(job: Job, settings: Settings) -> Path:
    """The local file behind a job's source, if the server may serve it; else ApiError 404."""
    if job.source.startswith(("http://", "https://")):
        raise ApiError(404, "source_not_local", "the job's source is a URL; open it there")
    if intake.upload_dir_of(settings, job.source) is not None:
        path = Path(job.source).resolve()
        if path.is_file():
            return path
        raise ApiError(404, "source_gone", "the uploaded file is no longer on the server")
    try:
        return resolve_local(job.source, settings.allowed_roots)
    except FramescribeError:
        raise ApiError(404, "source_not_served", "the job's source is not inside the allowed folders now") from None


VIDEO_TYPES = {
    "mp4/mov": "video/mp4",
    "matroska/webm": "video/webm",
    "avi": "video/x-msvideo",
    "flv": "video/x-flv",
    "asf/wmv": "video/x-ms-asf",
    "ogg": "video/ogg",
    "mpeg-ps": "video/mpeg",
    "mpeg-ts": "video/mp2t",
}
SOURCE_HEADERS = {  # a source is data to play, never a document: no sniffing, no scripts, no framing
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox; frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "private, max-age=3600",
}


def media_type_of(path: Path) -> str:
    """The video type the file's own bytes name (never its extension); ApiError 415 when it is not a video."""
    with path.open("rb") as fh:
        kind = intake.sniff(fh.read(intake.HEAD_BYTES))
    if kind is None:
        raise ApiError(415, "not_a_video", "the job's source is not a video container; it is not served")
    return VIDEO_TYPES[kind]


@router.get("/{job_id}/source-url", response_model=SourceLink, responses=ERRORS, summary="A link to play the source")
def source_url(job_id: JOB_ID, store: StoreDep, settings: SettingsDep, _: ReadAccess) -> SourceLink:
    path = playable(store.get_job(job_id), settings)
    secret = _secret(settings)
    if secret is None:
        return SourceLink(url=f"/v1/jobs/{job_id}/source", media_type=media_type_of(path), expires_at=None)
    exp = int(time.time()) + SIGNED_URL_TTL_S
    url = f"/v1/jobs/{job_id}/source?exp={exp}&sig={sign(secret, job_id, exp)}"
    return SourceLink(url=url, media_type=media_type_of(path), expires_at=exp)


@router.get(
    "/{job_id}/source",
    response_class=FileResponse,
    responses={200: {"content": {"video/mp4": {}}}, 206: {"description": "A byte range"}, **ERRORS},
    summary="The source video, with HTTP Range support (signed link or Bearer key)",
)
def source(
    job_id: JOB_ID,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    exp: Annotated[int | None, Query(ge=0, le=2**40)] = None,
    sig: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
) -> FileResponse:
    secret = _secret(settings)
    signed = (
        secret is not None
        and exp is not None
        and sig is not None
        and exp >= time.time()
        and hmac.compare_digest(sig, sign(secret, job_id, exp))
    )
    if not signed:
        authenticate(request, settings)
    path = playable(store.get_job(job_id), settings)
    media_type = media_type_of(path)
    ext = media_type.rsplit("/", 1)[-1].replace("x-", "")
    headers = {**SOURCE_HEADERS, "Content-Disposition": f'attachment; filename="source-{job_id[:8]}.{ext}"'}
    return FileResponse(path, media_type=media_type, headers=headers)
