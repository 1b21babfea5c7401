"""Presets: prompt templates (code defaults and configs/prompts.yaml), JSON shapes, repair prompt, times."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.adapters.describers.structured import SHAPES, StructuredOutputError, parse_structured
from worker.bootstrap import PROMPTS_FILE, load_prompts
from worker.core.presets import PRESETS, apply_times, extract_json, preset_for, readable_text, repair_prompt
from worker.core.prompts import DEFAULT_PRESETS, build_presets, render, segment_variables
from worker.core.timestamps import OUT_OF_RANGE, SegmentClock
from worker.errors import ConfigError

CLOCK = SegmentClock(10_000, 20_000, tuple(range(10_000, 20_000, 1000)), 1.0)
SEG_VARS = segment_variables("street.mp4", 10_000, 20_000, 1.0, "A man walks in.")
SUM_VARS = {"segments": "[00:00–00:10] x", "source": "street.mp4", "duration": "00:20", "count": 1}

SURVEILLANCE = {
    "title": "Delivery",
    "summary": "A courier leaves a parcel.",
    "people": ["courier in red"],
    "vehicles": ["white van"],
    "activity": "delivery",
    "concerns": [],
    "threat_level": 1,
    "events": [{"start": 1, "end": 3.5, "what": "parks"}, {"start": "00:08", "end": 42, "what": "drives off"}],
}
SPORTS = {
    "summary": "A fast break ends in a goal.",
    "events": [{"start": 0, "end": 2, "what": "pass"}],
    "highlights": [{"start": 5, "end": 7, "what": "goal", "score": 0.9}, {"start": 1, "what": "save", "score": 0.4}],
}


def test_every_preset_has_prompts_and_a_shape_when_json() -> None:
    assert set(PRESETS) == set(DEFAULT_PRESETS) == {"describe", "surveillance", "sports"}
    for name, preset in PRESETS.items():
        assert DEFAULT_PRESETS[name].json_output == preset.json_output
        assert (name in SHAPES) == preset.json_output
        render(DEFAULT_PRESETS[name].segment, SEG_VARS)
        render(DEFAULT_PRESETS[name].summary, SUM_VARS)
    assert preset_for(None).name == "describe" and preset_for("nope").name == "describe"


def test_shipped_prompts_file_loads_and_renders() -> None:
    assert PROMPTS_FILE.is_file()
    presets = load_prompts()
    raw = yaml.safe_load(PROMPTS_FILE.read_text())
    assert set(raw) == set(presets) == {*PRESETS, "ask"}  # "ask": the answer prompts of `framescribe ask`
    for name, prompts in presets.items():
        if name == "ask":
            assert "$question" in prompts.segment and prompts.system
            continue
        assert prompts.segment == raw[name]["segment"]  # the file wins over the code defaults
        assert prompts.json_output == PRESETS[name].json_output
        segment = render(prompts.segment, SEG_VARS)
        assert "street.mp4" in segment and "00:10" in segment and "00:20" in segment
        assert "Previously: A man walks in." in segment
        assert "$" not in segment
        assert render(prompts.summary, SUM_VARS).endswith("[00:00–00:10] x")
        # a JSON preset's template names every key its pydantic shape requires
        if prompts.json_output:
            for field, info in SHAPES[name].model_fields.items():
                if info.is_required():
                    assert f'"{field}"' in prompts.segment, (name, field)


def test_prompt_file_overrides_and_errors(tmp_path: Path) -> None:
    merged = build_presets(
        {"describe": {"system": "Be terse."}, "custom": {"segment": "S $start", "summary": "$segments"}}
    )
    assert merged["describe"].system == "Be terse."
    assert merged["describe"].segment == DEFAULT_PRESETS["describe"].segment
    assert merged["custom"].segment == "S $start" and not merged["custom"].json_output
    for bad, needle in (
        ({"describe": "text"}, "must be a mapping"),
        ({"describe": {"sistem": "x"}}, "unknown key 'sistem'"),
        ({"describe": {"segment": 3}}, "'describe.segment' must be a string"),
        ({"sports": {"json_output": "yes"}}, "true or false"),
    ):
        with pytest.raises(ConfigError, match=needle):
            build_presets(bad)
    path = tmp_path / "prompts.yaml"
    path.write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="must map preset names"):
        load_prompts(path)
    assert load_prompts(tmp_path / "missing.yaml") == DEFAULT_PRESETS


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('{"a": 1}', '{"a": 1}'),
        ('```json\n{"a": {"b": 2}}\n```', '{"a": {"b": 2}}'),
        ('Here you go: {"a": 1} hope this helps', '{"a": 1}'),
        ("no json here", None),
        ("} backwards {", None),
    ],
)
def test_extract_json(text: str, found: str | None) -> None:
    assert extract_json(text) == found


def test_surveillance_shape_validates_and_coerces() -> None:
    preset = PRESETS["surveillance"]
    data = parse_structured(
        preset, "```json\n" + json.dumps({**SURVEILLANCE, "people": 2, "extra": "ignored"}) + "\n```"
    )
    assert data["people"] == ["2 seen"] and "extra" not in data
    assert data["events"][1]["start"] == "00:08"
    for broken, needle in (
        ({**SURVEILLANCE, "threat_level": 7}, "threat_level"),
        ({k: v for k, v in SURVEILLANCE.items() if k != "summary"}, "summary"),
        ({**SURVEILLANCE, "events": [{"start": 1}]}, "events.0.what"),
    ):
        with pytest.raises(StructuredOutputError, match=needle):
            parse_structured(preset, json.dumps(broken))
    with pytest.raises(StructuredOutputError, match="no JSON object"):
        parse_structured(preset, "I cannot see anything.")
    with pytest.raises(StructuredOutputError, match="does not parse"):
        parse_structured(preset, '{"title": "x",}')


def test_sports_shape_scores_are_zero_to_one() -> None:
    preset = PRESETS["sports"]
    assert parse_structured(preset, json.dumps(SPORTS))["highlights"][0]["score"] == 0.9
    bad: dict[str, Any] = {**SPORTS, "highlights": [{"start": 1, "what": "x", "score": 3}]}
    with pytest.raises(StructuredOutputError, match=r"highlights\.0\.score"):
        parse_structured(preset, json.dumps(bad))
    with pytest.raises(StructuredOutputError, match="no JSON shape"):
        parse_structured(PRESETS["describe"], "{}")


def test_apply_times_converts_every_span_list() -> None:
    data, flags = apply_times(
        PRESETS["surveillance"], parse_structured(PRESETS["surveillance"], json.dumps(SURVEILLANCE)), CLOCK
    )
    assert [(e["start_ms"], e["end_ms"]) for e in data["events"]] == [(11_000, 13_500), (18_000, 20_000)]
    assert data["events"][1]["flags"] == [OUT_OF_RANGE] and flags == (OUT_OF_RANGE,)
    data, flags = apply_times(PRESETS["sports"], SPORTS, CLOCK)
    assert [(h["start_ms"], h["end_ms"]) for h in data["highlights"]] == [(15_000, 17_000), (11_000, None)]
    assert data["events"][0]["start_ms"] == 10_000 and flags == ()
    assert apply_times(PRESETS["describe"], {"summary": "x"}, CLOCK) == ({"summary": "x"}, ())


def test_readable_text_and_repair_prompt() -> None:
    assert (
        readable_text(PRESETS["surveillance"], SURVEILLANCE) == "Delivery: A courier leaves a parcel. (threat level 1)"
    )
    assert readable_text(PRESETS["sports"], SPORTS) == "A fast break ends in a goal. Top highlight: goal"
    prompt = repair_prompt(PRESETS["sports"], "{broken", "the JSON does not parse")
    assert "the JSON does not parse" in prompt and "{broken" in prompt and '"highlights"' in prompt
