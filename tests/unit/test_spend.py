"""Money as data (issue 15): usage fields, the frame size estimates assume, prices, frame limits."""

from __future__ import annotations

import pytest

from tests.fakes.dashscope_server import video_tokens as billed_tokens
from worker import spend
from worker.config import load_settings
from worker.core import budget, money
from worker.core.segments import plan_segments
from worker.errors import PlanError
from worker.options import JobOptions, plan_params


@pytest.mark.parametrize(
    ("usage", "visual"),
    [
        ({"input_tokens": 610, "output_tokens": 13, "video_tokens": 602}, 602),
        ({"input_tokens": 610, "output_tokens": 13, "image_tokens": 602}, 602),
        ({"input_tokens": 610, "output_tokens": 13, "input_tokens_details": {"video_tokens": 602}}, 602),
        (
            {
                "input_tokens": 610,
                "output_tokens": 13,
                "input_tokens_details": {"image_tokens": 2, "video_tokens": 600},
            },
            602,
        ),
        ({"prompt_tokens": 610, "completion_tokens": 13, "prompt_tokens_details": {"video_tokens": 602}}, 602),
        ({"input_tokens": 610, "output_tokens": 13}, None),
    ],
)
def test_every_usage_field_name_is_read(usage: dict[str, object], visual: int | None) -> None:
    got = money.read_usage(usage)
    assert (got.input_tokens, got.output_tokens, got.visual) == (610, 13, visual)


def test_cached_tokens_and_cost_at_the_price_table() -> None:
    s = load_settings()
    got = money.read_usage({"input_tokens": 1000, "output_tokens": 10, "prompt_tokens_details": {"cached_tokens": 400}})
    assert got.cached_tokens == 400
    price = s.dashscope.prices["qwen-vl-max"]
    expected = (600 * price.input + 400 * price.cached + 10 * price.output) / 1_000_000
    assert money.cost("qwen-vl-max-latest", 1000, 10, 400, s.dashscope.prices) == pytest.approx(expected)
    assert money.cost("unknown-model", 1000, 10, 0, s.dashscope.prices) is None


@pytest.mark.parametrize("model", ["qwen-vl-max-latest", "qwen2.5-vl-72b-instruct", "qwen3-vl-plus"])
@pytest.mark.parametrize("max_pixels", [None, 16 * 32 * 32, 50_000, 200_000])
@pytest.mark.parametrize("size", [(320, 240), (1920, 1080), (704, 544), (3000, 200)])
def test_frames_are_written_at_the_size_the_bill_is_computed_on(
    model: str, max_pixels: int | None, size: tuple[int, int]
) -> None:
    """Whether or not the server honours ``max_pixels``, the billed tokens of frames written at the
    job's frame size equal the estimate: the server has nothing left to shrink."""
    settings = load_settings(describer={"kind": "dashscope"}, dashscope={"model": model, "max_pixels": max_pixels})
    opts = JobOptions()
    w, h = spend.frame_size(*size, opts, settings)
    fb = spend.frame_budget(opts, settings)
    assert w * h <= fb.max_pixels and w % fb.factor == 0 and h % fb.factor == 0
    limits = budget.limits_for(model)
    if max_pixels:
        from dataclasses import replace

        limits = replace(limits, video_max_pixels=min(max_pixels, limits.video_max_pixels))
    for n in (4, 10, 64):
        estimate = budget.video_tokens(n, w, h, limits)
        assert estimate == billed_tokens(n, w, h, model, max_pixels) == billed_tokens(n, w, h, model, None)


def test_max_frames_follows_the_model_and_errors_name_the_right_limit() -> None:
    plus = load_settings(describer={"kind": "dashscope"}, dashscope={"model": "qwen3-vl-plus"})
    p = plan_params(JobOptions(fps=30, segment_seconds=60), plus)
    assert p.max_frames == 2000  # not silently capped at 512
    assert len(next(iter(plan_segments(60_000, 30.0, p))).targets_ms) == 1800
    with pytest.raises(PlanError, match="the model's limit of 2000"):
        list(plan_segments(120_000, 30.0, plan_params(JobOptions(fps=30, segment_seconds=100), plus)))
    own = load_settings(
        describer={"kind": "dashscope"}, dashscope={"model": "qwen3-vl-plus"}, sampling={"max_frames": 600}
    )
    with pytest.raises(PlanError, match=r"sampling\.max_frames of 600"):
        list(plan_segments(60_000, 30.0, plan_params(JobOptions(fps=30, segment_seconds=60), own)))


def test_the_summary_estimate_grows_with_the_job_and_is_bounded() -> None:
    s = load_settings()
    assert spend.summary_estimate(0, s) == (0, 0, 0)
    one = spend.summary_estimate(3, s)
    many = spend.summary_estimate(5000, s)
    assert one[0] == 1 and many[0] > 1 and many[1] > one[1]
