"""A job's options are resolved over the settings once (``JobOptions.apply``): one "auto" rule, one
place for every ``opts.X or settings.Y.X`` merge and the caps, shared by planning, spend and the steps."""

from __future__ import annotations

import pytest

from worker import spend
from worker.config import load_settings
from worker.options import JobOptions
from worker.service import plan as planning
from worker.service.options import resolve


def test_stored_options_resolve_once_per_process() -> None:
    settings = load_settings(dashscope={"api_key": "sk-x", "max_calls": 9})
    stored = {"fps": 1, "max_video_tokens": 500}
    a, b = JobOptions.parse(stored), JobOptions.parse(dict(stored))
    assert a is b  # the steps of one job share its parsed options ...
    assert resolve(a, settings) is a.apply(settings) is b.apply(settings)  # ... and their resolution
    other = load_settings(dashscope={"api_key": "sk-x", "max_calls": 3})
    assert a.apply(other).max_calls == 3  # other settings: resolved again, not a stale copy
    with pytest.raises(ValueError):
        a.fps = 2  # type: ignore[misc]  # shared, so frozen


CASES = [
    ("auto", "sk-x", "dashscope"),
    ("auto", None, "local"),
    ("local", "sk-x", "local"),
    ("dashscope", None, "dashscope"),
]


@pytest.mark.parametrize(("kind", "key", "want"), CASES)
def test_one_auto_rule_everywhere(kind: str, key: str | None, want: str) -> None:
    settings = load_settings(dashscope={"api_key": key} if key else {}, describer={"kind": "local"})
    opts = JobOptions.parse({"describer": kind})
    r = opts.apply(settings)
    assert r.describer == want and r.paid == (want == "dashscope")
    assert planning.describer_kind(opts, settings) == want
    assert spend.uses_dashscope(opts, settings) == (want == "dashscope")
    assert (spend.model_of(opts, settings) is not None) == (want == "dashscope")


def test_job_values_win_over_settings_and_caps_are_looked_up_once() -> None:
    settings = load_settings(
        dashscope={"api_key": "sk-x", "model": "qwen-vl-max-latest", "summary_model": "qwen-plus", "max_calls": 9,
                   "max_video_tokens": 9000, "max_pixels": 200_000, "max_tokens": 700},
        describer={"kind": "dashscope", "preset": "describe"},
    )  # fmt: skip
    base = JobOptions.parse({}).apply(settings)
    assert (base.model, base.summary_model, base.max_calls, base.max_video_tokens) == (
        "qwen-vl-max-latest", "qwen-plus", 9, 9000)  # fmt: skip
    assert (base.max_pixels, base.max_tokens, base.preset) == (200_000, 700, "describe")
    job = JobOptions.parse({"model": "qwen3-vl-plus", "max_calls": 2, "max_video_tokens": 100, "max_pixels": 50_000,
                            "max_tokens": 64, "preset": "surveillance", "segmenter": "scene"})  # fmt: skip
    r = job.apply(settings)
    assert (r.model, r.max_calls, r.max_video_tokens) == ("qwen3-vl-plus", 2, 100)
    assert (r.max_pixels, r.max_tokens) == (50_000, 64)
    assert (r.preset, r.segmenter) == ("surveillance", "scene")
    assert spend.frame_budget(job, settings).max_pixels <= 50_000  # frames at the job's max_pixels
