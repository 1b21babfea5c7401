"""``/internal/v1``: what workers on other machines fetch from the API (no shared disk, issue 16).

``GET /internal/v1/jobs/{id}/source.video?exp=&sig=`` serves a job's upload to the worker that plans or
samples it. Only a signed, unexpired link opens it (``worker.core.links``, keyed by
``security.internal_secret``; without that secret the route answers 404). The file is served like
``/v1/jobs/{id}/source``: only the job's own upload, only as the video type its bytes name, with the
same no-sniff / sandbox headers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from scheduler import intake
from scheduler.api.deps import SettingsDep, StoreDep
from scheduler.api.errors import ApiError
from scheduler.api.routes.exports import SOURCE_HEADERS, media_type_of
from worker.core.links import upload_link_ok

router = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)
JOB_ID = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$")]


@router.get("/jobs/{job_id}/source.video", response_class=FileResponse)
def upload_for_worker(
    job_id: JOB_ID,
    store: StoreDep,
    settings: SettingsDep,
    exp: Annotated[int | None, Query(ge=0, le=2**40)] = None,
    sig: Annotated[str | None, Query(max_length=64)] = None,
) -> FileResponse:
    secret = settings.security.internal_secret
    if secret is None or not secret.get_secret_value():
        raise ApiError(404, "not_found", "internal links are disabled: set security.internal_secret")
    if exp is None or sig is None or not upload_link_ok(secret.get_secret_value(), job_id, exp, sig, now=time.time()):
        raise ApiError(403, "forbidden", "the internal link is invalid or expired")
    job = store.get_job(job_id)
    if intake.upload_dir_of(settings, job.source) is None:
        raise ApiError(404, "not_an_upload", "the job's source is not an upload kept by this API")
    path = Path(job.source).resolve()
    if not path.is_file():
        raise ApiError(404, "source_gone", "the uploaded file is no longer on the server")
    headers = {**SOURCE_HEADERS, "Cache-Control": "no-store", "Content-Disposition": "attachment"}
    return FileResponse(path, media_type=media_type_of(path), headers=headers)
