"""Token maths, pixel budget, timecodes, prompts, summary, and core's import purity."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.core import budget
from worker.core.models import SegmentRow
from worker.core.prompts import render, segment_variables
from worker.core.summary import build_summary
from worker.core.timecode import clock, precise, span
from worker.errors import PlanError

CORE = Path(__file__).resolve().parents[2] / "worker" / "core"
IO_LIBS = {
    "cv2",
    "numpy",
    "dashscope",
    "sqlalchemy",
    "celery",
    "fastapi",
    "redis",
    "requests",
    "httpx",
    "openai",
}


@pytest.mark.parametrize(
    ("model", "n", "w", "h", "tokens"),
    [
        ("qwen-vl-max-latest", 4, 640, 480, 602),
        ("qwen-vl-max-latest", 16, 1280, 720, 4754),
        ("qwen-vl-max-latest", 64, 1280, 720, 19010),
        ("qwen2.5-vl-72b-instruct", 4, 640, 480, 784),
        ("qwen2.5-vl-72b-instruct", 16, 1280, 720, 5762),
        ("qwen2.5-vl-72b-instruct", 64, 1280, 720, 23042),
    ],
)
def test_documented_token_examples(model: str, n: int, w: int, h: int, tokens: int) -> None:
    assert budget.video_tokens(n, w, h, budget.limits_for(model)) == tokens


@given(w=st.integers(16, 8000), h=st.integers(16, 8000), max_px=st.integers(32 * 32 * 4, 4_000_000))
def test_frame_size_respects_budget(w: int, h: int, max_px: int) -> None:
    fw, fh = budget.frame_size(w, h, max_px)
    assert fw % 32 == 0 and fh % 32 == 0
    assert fw * fh <= max(max_px, 32 * 32)


def test_limits_table() -> None:
    assert budget.limits_for("qwen3-vl-plus").max_frames == 2000
    assert budget.limits_for("qwen-vl-max-latest").factor == 32
    assert budget.limits_for("qvq-max").factor == 28
    assert budget.limits_for("qwen-vl-max-2025-04-08").factor == 28
    assert budget.limits_for("qwen-vl-max-2025-08-13").factor == 32
    assert budget.limits_for("something-else").max_frames == 80


def test_timecodes() -> None:
    assert clock(65_000) == "01:05"
    assert clock(3_725_000) == "01:02:05"
    assert span(0, 10_000) == "00:00–00:10"
    assert span(3_590_000, 3_610_000) == "00:59:50–01:00:10"
    assert precise(3_723_004) == "01:02:03.004"
    assert precise(1_500, ",") == "00:00:01,500"


def test_prompt_render_and_unknown_variable() -> None:
    v = segment_variables("cam.mp4", 10_000, 20_000, 2.0, "a car parks")
    assert render("$source $start-$end @$fps.$previous", v) == "cam.mp4 00:10-00:20 @2. Previously: a car parks"
    with pytest.raises(PlanError, match=r"\$nope"):
        render("$nope", v)


def _row(i: int, state: str, text: str | None = None, error: str | None = None) -> SegmentRow:
    return SegmentRow(
        i,
        i * 10_000,
        (i + 1) * 10_000,
        state,
        text,
        {},
        10,
        video_tokens=100 if text else 0,
        error=error,
        describer="dashscope",
    )


def test_summary_states_and_totals() -> None:
    done = build_summary([_row(0, "done", "A car arrives. It parks."), _row(1, "done", "A man walks.")], 20_000)
    assert done.state == "done" and done.segments_done == 2 and done.video_tokens == 200 and done.calls == 2
    assert "2 parts: 00:00–00:10 A car arrives; 00:10–00:20 A man walks." in done.text
    assert "It parks" not in done.text, "a summary, not the descriptions word for word"
    assert [c[2] for c in done.chapters] == ["A car arrives", "A man walks"]
    partial = build_summary([_row(0, "done", "x"), _row(1, "failed", error="decode error at 12.00s")], 20_000)
    assert partial.state == "partial" and "decode error at 12.00s" in partial.text
    assert build_summary([_row(0, "failed", error="e")], 10_000).state == "failed"
    assert build_summary([_row(0, "done", "x")], 10_000, stopped_reason="cap").state == "partial"


def test_core_imports_no_io_library() -> None:
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in IO_LIBS, f"{path.name} imports {name}"
                assert not name.startswith(("worker.adapters", "worker.service.segment", "scheduler")), path.name
