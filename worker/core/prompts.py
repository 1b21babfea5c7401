"""Prompt building: templates with variables, rendered without I/O."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from worker.core.presets import SPORTS_SCHEMA, SURVEILLANCE_SCHEMA
from worker.core.timecode import clock
from worker.errors import ConfigError, PlanError


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
    "surveillance": PromptSet(
        system=(
            "You review security camera footage. Report only what is visible: people, vehicles, what they "
            "do and anything that may need attention. Never guess identities."
        ),
        segment=(
            "These frames come from '$source', from $start to $end of the video, sampled at $fps "
            "frames per second.$previous " + SURVEILLANCE_SCHEMA
        ),
        summary=(
            "Summarise this security footage from its timed segment reports in one paragraph; name the "
            "times of anything that needs attention:\n$segments"
        ),
        json_output=True,
    ),
    "sports": PromptSet(
        system="You commentate sports footage precisely. Report only plays that are visible.",
        segment=(
            "These frames come from '$source', from $start to $end of the video, sampled at $fps "
            "frames per second.$previous " + SPORTS_SCHEMA
        ),
        summary=(
            "Summarise this match footage from its timed segment reports in one paragraph, naming the "
            "best moments with their times:\n$segments"
        ),
        json_output=True,
    ),
}


def build_presets(data: Mapping[str, object], base: Mapping[str, PromptSet] | None = None) -> dict[str, PromptSet]:
    """Prompt sets from a parsed ``configs/prompts.yaml`` mapping; missing keys keep ``base``'s text.

    Raises ConfigError naming the preset and key that is not a string."""
    presets = dict(DEFAULT_PRESETS if base is None else base)
    for name, entry in data.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"prompts: preset '{name}' must be a mapping of system/segment/summary")
        known = presets.get(str(name), PromptSet("", "", "$segments"))
        fields: dict[str, object] = {
            "system": known.system,
            "segment": known.segment,
            "summary": known.summary,
            "json_output": known.json_output,
        }
        for key, value in entry.items():
            if key not in fields:
                raise ConfigError(f"prompts: preset '{name}' has an unknown key '{key}'")
            if key == "json_output" and not isinstance(value, bool):
                raise ConfigError(f"prompts: '{name}.json_output' must be true or false")
            if key != "json_output" and not isinstance(value, str):
                raise ConfigError(f"prompts: '{name}.{key}' must be a string")
            fields[key] = value
        presets[str(name)] = PromptSet(
            str(fields["system"]), str(fields["segment"]), str(fields["summary"]), bool(fields["json_output"])
        )
    return presets


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
