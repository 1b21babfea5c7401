"""Per-job options: what a submit may set, validated once at the edge and stored with the job."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from worker.config import Settings
from worker.core.budget import limits_for
from worker.core.segments import PlanParams, step_ms
from worker.errors import PlanError


@dataclass(frozen=True, slots=True)
class Resolved:
    """A job's options over the settings: every ``opts.X or settings.Y.X`` merge, the "auto" describer
    rule and the caps, made once (``JobOptions.apply``); the steps read this, never the two halves."""

    describer: str  # "local" | "dashscope": the "auto" rule applied
    model: str
    summary_model: str
    preset: str
    prompt: str | None
    segmenter: str
    max_video_tokens: int | None
    max_calls: int | None
    max_pixels: int | None
    max_tokens: int

    @property
    def paid(self) -> bool:
        """Whether calls are billed, so the caps apply (DashScope)."""
        return self.describer == "dashscope"


class JobOptions(BaseModel):
    """Unset fields fall back to the settings (``apply``). Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # parsed instances are shared (``parse``)
    _resolved: tuple[Settings, Resolved] | None = PrivateAttr(default=None)

    fps: float | None = Field(None, gt=0, le=30, description="Frames sampled per second.")
    segment_seconds: float | None = Field(None, gt=0, le=3600)
    overlap_seconds: float | None = Field(None, ge=0, le=3600)
    start_s: float | None = Field(None, ge=0, description="Start of the range to describe (s).")
    end_s: float | None = Field(None, gt=0, description="End of the range to describe (s).")
    segmenter: Literal["fixed", "scene", "motion", "hybrid"] | None = None
    describer: Literal["auto", "local", "dashscope"] | None = None
    model: str | None = Field(None, max_length=64)
    preset: Literal["describe", "surveillance", "sports"] | None = None
    prompt: str | None = Field(None, max_length=4000)
    max_video_tokens: int | None = Field(None, ge=1)
    max_calls: int | None = Field(None, ge=1)
    # DashScope call parameters for this job (unset: the dashscope settings)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    max_tokens: int | None = Field(None, ge=1, le=8192)
    vl_high_resolution_images: bool | None = None
    max_pixels: int | None = Field(None, ge=3136, description="Per-frame pixel cap DashScope applies.")
    stream: bool | None = None

    @model_validator(mode="after")
    def _step(self) -> JobOptions:
        """overlap vs segment length, in the integer milliseconds the planner uses (both given here)."""
        if self.segment_seconds is not None and self.overlap_seconds is not None:
            try:
                step_ms(self.segment_seconds, self.overlap_seconds)
            except PlanError as exc:
                raise ValueError(exc.message) from None
        return self

    @classmethod
    def parse(cls, data: dict[str, Any]) -> JobOptions:
        """Validated options; a job's stored options parse to one shared instance (so they are resolved
        over the settings once per process, not at every step)."""
        try:
            key = json.dumps(data, sort_keys=True)
        except (TypeError, ValueError):
            key = None
        if key is None or cls is not JobOptions:  # a subclass (the API's JobCreate) gets its own type
            return cls._validate(data)
        return _parsed(key)

    @classmethod
    def _validate(cls, data: Any) -> JobOptions:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
            raise PlanError(f"option '{where}': {msg}", field=where) from None

    def apply(self, settings: Settings) -> Resolved:
        """The options over ``settings``, resolved once per options and settings (then kept)."""
        if self._resolved is not None and self._resolved[0] is settings:
            return self._resolved[1]
        d = settings.dashscope
        kind = settings.resolve_describer(self.describer or settings.describer.kind)  # the one "auto" rule
        model = self.model or d.model
        resolved = Resolved(
            describer=kind,
            model=model,
            summary_model=d.summary_model or model,
            preset=self.preset or settings.describer.preset,
            prompt=self.prompt or settings.describer.prompt,
            segmenter=self.segmenter or settings.sampling.segmenter,
            max_video_tokens=self.max_video_tokens or d.max_video_tokens,
            max_calls=self.max_calls or d.max_calls,
            max_pixels=self.max_pixels or d.max_pixels,
            max_tokens=self.max_tokens or d.max_tokens,
        )
        self._resolved = (settings, resolved)
        return resolved

    def stored(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    def dashscope_overrides(self) -> dict[str, Any]:
        """The DashScope settings this job changes (model and call parameters)."""
        return {k: getattr(self, k) for k in DASHSCOPE_FIELDS if getattr(self, k) is not None}


DASHSCOPE_FIELDS = (
    "model",
    "temperature",
    "top_p",
    "seed",
    "max_tokens",
    "vl_high_resolution_images",
    "max_pixels",
    "stream",
)


@functools.lru_cache(maxsize=256)
def _parsed(key: str) -> JobOptions:
    return JobOptions._validate(json.loads(key))


def plan_params(opts: JobOptions, settings: Settings, *, source_fps: float | None = None) -> PlanParams:
    s = settings.sampling
    r = opts.apply(settings)
    # a DashScope request must hold what the model accepts: plan within its frame limits
    limits = limits_for(r.model) if r.paid else None
    fps = opts.fps or s.fps
    if source_fps and fps > source_fps:  # cannot sample faster than the video has frames
        fps = source_fps
    return PlanParams(
        fps=fps,
        segment_seconds=opts.segment_seconds or s.segment_seconds,
        overlap_seconds=s.overlap_seconds if opts.overlap_seconds is None else opts.overlap_seconds,
        min_frames=max(s.min_frames, limits.min_frames) if limits else s.min_frames,
        max_frames=min(s.max_frames or limits.max_frames, limits.max_frames) if limits else (s.max_frames or 512),
        max_frames_source=_frames_source(s.max_frames, limits.max_frames if limits else None),
        start_s=opts.start_s,
        end_s=opts.end_s,
        max_frames_per_job=settings.limits.max_frames_per_job,
        max_segments_per_job=settings.limits.max_segments_per_job,
    )


def _frames_source(setting: int | None, model_limit: int | None) -> str:
    """What the per-segment frame limit comes from, for error messages."""
    if model_limit is not None and (setting is None or setting >= model_limit):
        return "the model's limit"
    return "sampling.max_frames" if setting is not None else "the frame limit (sampling.max_frames default)"
