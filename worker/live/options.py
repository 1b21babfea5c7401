"""What one watched camera is asked to do (CLI flags, API body, stored with the stream)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from worker.errors import InputError
from worker.live.rules import parse_rule

MAX_FRAMES = 512  # frames of one segment (the model's frame-list limit; they are held in memory)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_duration(text: str | float | int | None, field: str = "duration") -> float | None:
    """Seconds from ``90``, ``90s``, ``15m``, ``1h``, ``1d`` (None stays None)."""
    if text is None or text == "":
        return None
    if isinstance(text, int | float):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
        if not m:
            raise InputError(f"{field}: '{text}' is not a duration (e.g. 30s, 15m, 1h)", field=field)
        value = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if value <= 0 or value > 366 * 86400:
        raise InputError(f"{field}: must be between 0 and a year", field=field)
    return value


class WatchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segment_seconds: float = Field(10.0, ge=1, le=3600)
    fps: float = Field(1.0, gt=0, le=10, description="Frames sampled per second (raised to give 4 per segment).")
    segmenter: Literal["fixed", "motion"] = "fixed"
    preset: Literal["describe", "surveillance", "sports"] | None = None
    describer: Literal["auto", "local", "dashscope"] | None = None
    alert: list[str] = Field(default_factory=list, max_length=20)
    digest_seconds: float | None = Field(None, ge=10, le=7 * 86400)
    mqtt: bool = True
    webhook_url: str | None = None

    @field_validator("alert")
    @classmethod
    def _rules(cls, value: list[str]) -> list[str]:
        for rule in value:
            parse_rule(rule)
        return value

    @model_validator(mode="after")
    def _frames(self) -> WatchOptions:
        if self.segment_seconds * self.sample_fps > MAX_FRAMES:
            raise ValueError(
                f"{self.segment_seconds:g} s segments at {self.sample_fps:g} fps hold more than {MAX_FRAMES} frames "
                "(kept in memory until the segment closes): shorten segment_seconds or lower fps"
            )
        return self

    @property
    def sample_fps(self) -> float:
        return max(self.fps, 4.0 / self.segment_seconds)

    def job_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {"segment_seconds": self.segment_seconds, "fps": self.sample_fps}
        if self.preset:
            out["preset"] = self.preset
        if self.describer:
            out["describer"] = self.describer
        return out

    @classmethod
    def parse(cls, data: dict[str, Any]) -> WatchOptions:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "options"
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise InputError(f"{where}: {msg}", field=where) from None


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise InputError("a camera name is 1-64 letters, digits, '.', '_' or '-'", field="name")
    return name
