"""REST bodies: ``*Create``/``*Update`` come in (unknown fields refused), ``*Public`` go out."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, field_validator

from worker.options import JobOptions

CONTROL = {chr(c) for c in range(32)} | {"\x7f"}
TEXT_CONTROL = CONTROL - {"\n", "\t", "\r"}  # prompts may span lines; names, paths and URLs may not


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_control(value: str | None, refused: set[str] = CONTROL) -> str | None:
    if value is not None and any(c in refused for c in value):
        raise ValueError("control characters (such as NUL) are not allowed")
    return value


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable reason, e.g. unknown_field, source_refused, not_found.")
    message: str = Field(description="What went wrong and what to do, for people.")
    field: str | None = Field(None, description="The request field at fault, when there is one.")


class ErrorBody(BaseModel):
    error: ErrorDetail


def _numeric(annotation: Any) -> bool:
    args = getattr(annotation, "__args__", (annotation,))
    return any(a in (int, float) for a in args)


NUMERIC_OPTIONS = {name for name, f in JobOptions.model_fields.items() if _numeric(f.annotation)}


class JobCreate(JobOptions):
    """A job: one source (``path`` inside the allowed roots, or ``url``) plus the job options.

    Uploads use ``multipart/form-data`` instead: a ``file`` part and an optional ``options`` part
    holding this object as JSON (without ``path``/``url``)."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(None, max_length=4096, description="A video file inside FRAMESCRIBE_ALLOWED_ROOTS.")
    url: str | None = Field(None, max_length=8192, description="An http(s) URL of a video (public hosts only).")
    dry_run: StrictBool = Field(False, description="Only estimate segments, frames and tokens; queue nothing.")
    webhook_url: str | None = Field(None, max_length=2048, description="POSTed (signed) when the job ends.")

    @field_validator("model", "path", "url", "webhook_url")
    @classmethod
    def _clean(cls, value: str | None) -> str | None:
        return _no_control(value)

    @field_validator("prompt")
    @classmethod
    def _clean_text(cls, value: str | None) -> str | None:
        return _no_control(value, TEXT_CONTROL)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Numbers must be JSON numbers: ``true`` or ``"2"`` for fps is a mistake, not 1.0 or 2.0."""
        if isinstance(value, bool | str) and info.field_name in NUMERIC_OPTIONS:
            raise ValueError("must be a number")
        return value

    def options(self) -> JobOptions:
        data = self.model_dump(include=set(JobOptions.model_fields), exclude_none=True)
        return JobOptions.model_validate(data)


class JobPublic(BaseModel):
    id: str
    state: str = Field(description="queued, running, done, partial, failed or cancelled.")
    source_name: str
    source_kind: Literal["path", "url", "upload"]
    options: dict[str, Any]
    video: dict[str, Any] | None
    segment_count: int
    progress: dict[str, int] = Field(description="Segments per state (pending, running, done, failed, ...).")
    usage: dict[str, int | float | str | None] = Field(
        description="Token and request totals (segments, repairs and the summary) and the cost at the price table."
    )
    error: str | None
    schedule_id: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    links: dict[str, str]


class JobAccepted(JobPublic):
    created: bool = Field(description="False when an earlier request with the same Idempotency-Key made this job.")


class DryRunPublic(BaseModel):
    dry_run: Literal[True] = True
    video: dict[str, Any]
    estimate: dict[str, Any]


class JobsPublic(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null at the end.")


class SegmentPublic(BaseModel):
    index: int
    start_ms: int
    end_ms: int
    state: str
    description: str | None
    structured: dict[str, Any]
    frame_count: int
    input_tokens: int
    output_tokens: int
    video_tokens: int
    describer: str | None
    model: str | None
    attempts: int
    http_attempts: int = Field(0, description="Model requests really sent for this segment (retries included).")
    latency_ms: int
    error: str | None
    reused_from: int | None = Field(None, description="Segment whose description was reused (no model call).")
    flags: list[str] = Field(default_factory=list, description="e.g. cached, reused, time_out_of_range, invalid_json")
    frames: list[str] = Field(description="URLs of the segment's frames (JPEG).")


class SegmentsPublic(BaseModel):
    job_id: str
    items: list[SegmentPublic]
    next_after: int | None = Field(description="Pass as ?after= for the next page; null at the end.")


class SummaryPublic(BaseModel):
    job_id: str
    state: str
    summary: dict[str, Any]


class ScheduleSource(StrictModel):
    """Either a folder (inside the allowed roots) scanned with ``glob``, or a URL fetched on every run."""

    folder: str | None = Field(None, max_length=4096, description="Folder to watch, inside FRAMESCRIBE_ALLOWED_ROOTS.")
    glob: str = Field("*", max_length=200, description="Pattern relative to the folder, e.g. '*.mp4' or '**/*.mkv'.")
    settle_s: float = Field(5.0, ge=0, le=86400, description="Ignore files modified less than this long ago.")
    max_files_per_run: int = Field(100, ge=1, le=10000, description="Jobs one run may create; the rest wait.")
    url: str | None = Field(None, max_length=8192, description="A video URL; each run makes one job.")

    @field_validator("folder", "glob", "url")
    @classmethod
    def _clean(cls, value: str | None) -> str | None:
        return _no_control(value)


class ScheduleCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    cron: str | None = Field(
        None, max_length=200, description="5 fields (min hour day month weekday) or 6 with seconds first."
    )
    timezone: str = Field("UTC", max_length=64, description="IANA timezone the cron expression is read in.")
    interval_s: float | None = Field(None, ge=1, le=366 * 86400, description="Seconds between runs (instead of cron).")
    source: ScheduleSource
    options: JobOptions = Field(default_factory=JobOptions)
    webhook_url: str | None = Field(None, max_length=2048)
    enabled: StrictBool = True

    @field_validator("name", "cron", "timezone", "webhook_url")
    @classmethod
    def _clean(cls, value: str | None) -> str | None:
        return _no_control(value)


class ScheduleUpdate(StrictModel):
    """Only the fields given change; ``source`` and ``options`` are replaced as a whole."""

    name: str | None = Field(None, min_length=1, max_length=200)
    cron: str | None = Field(None, max_length=200)
    timezone: str | None = Field(None, max_length=64)
    interval_s: float | None = Field(None, ge=1, le=366 * 86400)
    source: ScheduleSource | None = None
    options: JobOptions | None = None
    webhook_url: str | None = Field(None, max_length=2048)
    enabled: StrictBool | None = None

    @field_validator("name", "cron", "timezone", "webhook_url")
    @classmethod
    def _clean(cls, value: str | None) -> str | None:
        return _no_control(value)


class JobBrief(BaseModel):
    id: str
    state: str
    source_name: str
    created_at: datetime


class SchedulePublic(BaseModel):
    id: str
    name: str
    enabled: bool
    cron: str | None
    timezone: str
    interval_s: float | None
    source: dict[str, Any]
    options: dict[str, Any]
    webhook_url: str | None
    created_at: datetime
    updated_at: datetime
    last_run_at: datetime | None
    next_run_at: datetime | None
    last_error: str | None
    run_count: int
    jobs_created: int
    recent_jobs: list[JobBrief]
    links: dict[str, str]


class SchedulesPublic(BaseModel):
    items: list[SchedulePublic]
    next_cursor: str | None


class RunAccepted(BaseModel):
    schedule_id: str
    task_id: str
    status: Literal["queued"] = "queued"
