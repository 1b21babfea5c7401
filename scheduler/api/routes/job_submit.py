"""``POST /v1/jobs``: submit a path, a URL or a multipart upload (dry run; Idempotency-Key)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from scheduler import intake
from scheduler.api.deps import PortsDep, Principal, SettingsDep, StoreDep, WriteAccess
from scheduler.api.errors import ApiError, validation_message
from scheduler.api.models import DryRunPublic, JobAccepted, JobCreate
from scheduler.api.params import ERRORS
from scheduler.api.presenters import accepted
from worker.config import Settings
from worker.core.ports import ResultStore
from worker.service import jobs as job_service
from worker.service import sources
from worker.service.context import Ports
from worker.sources import download

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
JSON_MAX_BYTES = 1024 * 1024
SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobCreate"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "The video."},
                        "options": {"type": "string", "description": "JobCreate fields as JSON (no path/url)."},
                    },
                }
            },
        },
    }
}


def scoped_key(principal: Principal, key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > 160 or not key.isprintable() or not key.isascii():
        raise ApiError(422, "invalid_field", "Idempotency-Key must be 1 to 160 printable ASCII characters",
                       field="Idempotency-Key")  # fmt: skip
    return f"{principal.id}:{key}"


async def read_json(request: Request) -> JobCreate:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > JSON_MAX_BYTES:
            raise ApiError(413, "too_large", f"the JSON body is larger than {JSON_MAX_BYTES} bytes")
    try:
        return JobCreate.model_validate_json(bytes(raw) or b"{}")
    except ValidationError as exc:
        code, message, field = validation_message(exc.errors())
        raise ApiError(422, code, message, field=field) from None


def parse_upload_options(raw: bytes) -> JobCreate:
    data = intake.parse_options_part(raw)
    try:
        body = JobCreate.model_validate(data)
    except ValidationError as exc:
        code, message, field = validation_message(exc.errors())
        raise ApiError(422, code, f"options: {message}", field=f"options.{field}" if field else "options") from None
    if body.path or body.url:
        raise ApiError(422, "invalid_field", "an upload carries its own file: leave out path and url", field="options")
    return body


def plan_estimate(info: Any, body: JobCreate, ports: Ports) -> dict[str, Any]:
    """The dry-run answer; also refuses plans over the budget caps (422) before anything is queued."""
    est = job_service.estimate(info, body.options(), ports)
    return DryRunPublic(video=info.as_dict(), estimate=est.as_dict()).model_dump(mode="json")


def probe_url_copy(url: str, settings: Settings) -> Any:
    """Download (within the limits) into a temporary folder and probe it: dry runs of URL sources."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.data_dir, prefix=".dryrun-") as tmp:
        path = download(
            url,
            Path(tmp),
            max_bytes=settings.limits.max_download_bytes,
            timeout_s=settings.limits.download_timeout_s,
            allow=intake.url_allow(settings),
        )
        return intake.probe_local(path, settings, "the URL's content", "url")


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    responses={200: {"model": DryRunPublic, "description": "dry run: the estimate"}, **ERRORS},
    openapi_extra=SUBMIT_BODY,
    summary="Submit a job (JSON with path or url, or a multipart upload)",
)
async def submit(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    ports: PortsDep,
    principal: WriteAccess,
    idempotency_key: Annotated[str | None, Header(description="Same key, same job (per API key).")] = None,
) -> Response:
    key = scoped_key(principal, idempotency_key)
    if key and (seen := await run_in_threadpool(store.job_by_key, key)):
        return accepted(seen, False, store, settings)
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        return await _submit_upload(request, settings, store, ports, key)
    if ctype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
    body = await read_json(request)
    return await run_in_threadpool(_submit_json, body, settings, store, ports, key)


def _submit_json(body: JobCreate, settings: Settings, store: ResultStore, ports: Ports, key: str | None) -> Response:
    if (body.path is None) == (body.url is None):
        raise ApiError(422, "invalid_field", "give exactly one source: path or url (or upload a file)", field="path")
    if body.webhook_url:
        intake.check_webhook(body.webhook_url, settings)
    if body.path is not None:
        real = intake.check_path(body.path, settings)
        info = intake.probe_local(real, settings, body.path, "path")
        estimate = plan_estimate(info, body, ports)
        if body.dry_run:
            return JSONResponse(estimate, status_code=200)
        source = sources.Source(str(real), real.name)
    else:
        assert body.url is not None
        intake.preflight_url(body.url, settings)
        if body.dry_run:
            return JSONResponse(plan_estimate(probe_url_copy(body.url, settings), body, ports), status_code=200)
        source = sources.Source(body.url, sources.url_name(body.url))
    job, created = job_service.submit(ports, source, body.options(), idempotency_key=key, webhook_url=body.webhook_url)
    return accepted(job, created, store, settings)


async def _submit_upload(
    request: Request, settings: Settings, store: ResultStore, ports: Ports, key: str | None
) -> Response:
    up = await intake.receive_upload(request, settings)
    try:
        body = parse_upload_options(up.options)
        if body.webhook_url:
            intake.check_webhook(body.webhook_url, settings)
        assert up.path is not None
        info = await run_in_threadpool(intake.probe_local, up.path, settings, f"the upload '{up.filename}'", "file")
        estimate = await run_in_threadpool(plan_estimate, info, body, ports)  # never plan on the event loop
        if body.dry_run:
            up.discard()
            return JSONResponse(estimate, status_code=200)
        job, created = await run_in_threadpool(
            job_service.submit, ports, sources.Source(str(up.path), up.filename), body.options(),
            idempotency_key=key, webhook_url=body.webhook_url,
        )  # fmt: skip
    except BaseException:  # QueueUnavailable included: the job was withdrawn
        up.discard()
        raise
    if not created:
        up.discard()
    return accepted(job, created, store, settings)
