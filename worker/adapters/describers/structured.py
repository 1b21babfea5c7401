"""Pydantic shapes of the JSON presets, and parsing a model reply into one (or a clear reason why not)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.core.presets import Preset, extract_json

Time = float | str  # seconds from the clip's first frame, or "MM:SS" / "HH:MM:SS"


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class Span(_Shape):
    start: Time
    end: Time | None = None
    what: str = Field(min_length=1)


class Highlight(Span):
    score: float = Field(ge=0, le=1)


class SurveillanceReport(_Shape):
    title: str = Field(min_length=1)
    summary: str = Field(min_length=1)
    people: list[str] = Field(default_factory=list)
    vehicles: list[str] = Field(default_factory=list)
    activity: str = ""
    concerns: list[str] = Field(default_factory=list)
    threat_level: int = Field(ge=0, le=3)
    events: list[Span] = Field(default_factory=list)

    @field_validator("people", "vehicles", "concerns", mode="before")
    @classmethod
    def _counts_to_lists(cls, value: Any) -> Any:
        """Models sometimes answer a count or one string; keep the information as a list."""
        if isinstance(value, int) and not isinstance(value, bool):
            return [f"{value} seen"] if value else []
        if isinstance(value, str):
            return [value] if value.strip() else []
        return value


class SportsReport(_Shape):
    summary: str = Field(min_length=1)
    events: list[Span] = Field(default_factory=list)
    highlights: list[Highlight] = Field(default_factory=list)


SHAPES: dict[str, type[_Shape]] = {"surveillance": SurveillanceReport, "sports": SportsReport}


class StructuredOutputError(ValueError):
    """The reply is not the JSON the preset asks for; ``str()`` says what is wrong, briefly."""


def parse_structured(preset: Preset, text: str) -> dict[str, Any]:
    """Validate a reply against the preset's shape; returns plain JSON data."""
    shape = SHAPES.get(preset.name)
    if shape is None:
        raise StructuredOutputError(f"preset '{preset.name}' has no JSON shape")
    body = extract_json(text)
    if body is None:
        raise StructuredOutputError("the reply holds no JSON object")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise StructuredOutputError(f"the JSON does not parse: {exc}") from None
    try:
        return shape.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors()[:5]]
        raise StructuredOutputError("; ".join(problems)) from None
