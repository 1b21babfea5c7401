"""Prompt building: templates with variables, rendered without I/O."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from worker.core.timecode import clock
from worker.errors import PlanError


@dataclass(frozen=True, slots=True)
class PromptSet:
    system: str
    segment: str
    summary: str
    json_output: bool = False


DEFAULT_PRESETS: dict[str, PromptSet] = {
    "describe": PromptSet(
        system="You describe video clips precisely and briefly. Report only what is visible.",
        segment=(
            "These frames come from '$source', from $start to $end of the video, sampled at $fps "
            "frames per second.$previous Describe what happens, in order, in 2-4 sentences."
        ),
        summary="Summarise this video from its timed segment descriptions in one paragraph:\n$segments",
    ),
}


def render(template: str, variables: Mapping[str, object]) -> str:
    """Substitute ``$name`` variables; an unknown variable is a PlanError naming it."""
    try:
        return string.Template(template).substitute({k: str(v) for k, v in variables.items()})
    except KeyError as exc:
        raise PlanError(f"prompt template uses an unknown variable ${exc.args[0]}", field="prompt") from None
    except ValueError as exc:
        raise PlanError(f"prompt template is malformed: {exc}", field="prompt") from None


def segment_variables(source: str, start_ms: int, end_ms: int, fps: float, previous: str | None) -> dict[str, object]:
    prev = f" Previously: {previous.strip()[:400]}" if previous else ""
    return {
        "source": source,
        "start": clock(start_ms),
        "end": clock(end_ms),
        "start_s": f"{start_ms / 1000:.1f}",
        "end_s": f"{end_ms / 1000:.1f}",
        "duration_s": f"{(end_ms - start_ms) / 1000:.1f}",
        "fps": f"{fps:g}",
        "previous": prev,
    }
