"""Path parameters and error responses shared by the job routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path as PathParam

from scheduler.api.models import ErrorBody

JOB_ID = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$", description="A job id (32 hex characters).")]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 413, 415, 422, 503)
}
