"""Every export format, read back with the library an editor's tool would use (webvtt-py, srt, csv, OTIO)."""

from __future__ import annotations

import csv
import html
import io
import json
import multiprocessing
import tracemalloc
from collections.abc import Iterator
from typing import Any

import opentimelineio as otio
import pytest
import srt
import webvtt

from worker.core.exports import FORMATS, ExportInput, renderer
from worker.core.exports.edl import tc_fps, tc_rate
from worker.core.exports.text import cuts, score_of, to_ms
from worker.errors import InputError

ALL = ("json", "csv", "vtt", "srt", "chapters", "edl", "otio", "md")


def seg(
    i: int,
    text: str | None,
    *,
    state: str = "done",
    structured: dict[str, Any] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    start = i * 10_000 if start_ms is None else start_ms
    return {
        "index": i, "start_ms": start, "end_ms": start + 10_000 if end_ms is None else end_ms, "state": state,
        "description": text, "structured": structured or {}, "frame_count": 10, "input_tokens": 100 + i,
        "output_tokens": 20, "video_tokens": 300, "error": error, "describer": "dashscope", "model": "qwen-vl-max",
        "frames": [{"n": 0, "t_ms": start, "path": f"/f/{i}/0.jpg"}],
    }  # fmt: skip


JOB: dict[str, Any] = {
    "id": "j1", "state": "partial", "source": "/videos/gate 3.mp4", "source_name": "gate 3.mp4",
    "video": {"duration_ms": 40_000, "fps": 30000 / 1001, "width": 1280, "height": 720},
    "segment_count": 4, "summary": {"text": "A car & a man <arrive>."}, "usage": {"input_tokens": 406},
    "created_at": "2026-01-01T00:00:00+00:00",
}  # fmt: skip

SEGMENTS = [
    seg(0, "A red car parks.\n\nA man gets out & waves --> at the <camera>.", structured={"threat_level": 1}),
    seg(1, None, state="failed", error="decode error at 00:12"),
    seg(2, "=SUM(A1) The man walks off.", structured={"threat_level": 3, "title": "Man leaves"}),
    seg(3, "Empty street.", structured={"threat_level": 0}),
]


def render(fmt: str, segments: list[dict[str, Any]] | None = None, **options: str) -> str:
    fn, _, _ = renderer(fmt)
    return "".join(fn(ExportInput(JOB, iter(SEGMENTS if segments is None else segments), dict(options))))


def test_registry_names_every_format_once() -> None:
    renderer("json")
    assert set(ALL) <= set(FORMATS)
    exts = [ext for _, _, ext in FORMATS.values()]
    assert len(exts) == len(set(exts)), "two formats would write the same file name"
    with pytest.raises(InputError, match="unknown export format 'docx'"):
        renderer("docx")


def test_json_is_complete() -> None:
    data = json.loads(render("json"))
    assert data["id"] == "j1" and [s["index"] for s in data["segments"]] == [0, 1, 2, 3]
    assert data["segments"][1]["error"] == "decode error at 00:12"


def test_csv_one_row_per_segment_with_formulas_defused() -> None:
    rows = list(csv.DictReader(io.StringIO(render("csv"))))
    assert [int(r["index"]) for r in rows] == [0, 1, 2, 3]
    assert rows[1]["state"] == "failed" and rows[1]["error"] == "decode error at 00:12"
    assert rows[0]["start"] == "00:00:00.000" and rows[0]["end"] == "00:00:10.000"
    assert json.loads(rows[2]["structured"]) == {"threat_level": 3, "title": "Man leaves"}
    assert rows[2]["description"].startswith("'=SUM"), "a spreadsheet must not run model text as a formula"
    assert "\n\nA man gets out" in rows[0]["description"], "newlines survive quoting"


def test_vtt_cues_at_true_times_parse_back() -> None:
    text = render("vtt")
    vtt = webvtt.from_string(text)
    cues = list(vtt)
    assert [(c.start, c.end) for c in cues] == [
        ("00:00:00.000", "00:00:10.000"), ("00:00:20.000", "00:00:30.000"), ("00:00:30.000", "00:00:40.000"),
    ]  # fmt: skip
    assert [c.identifier for c in cues] == ["seg-0", "seg-2", "seg-3"], "failed segments have no cue"
    assert html.unescape(cues[0].text) == "A red car parks.\nA man gets out & waves → at the <camera>."
    assert "&lt;camera&gt;" in cues[0].text and "-->" not in cues[0].text, "entities, not markup"


def test_srt_parses_back_with_srt() -> None:
    subs = list(srt.parse(render("srt")))
    assert [s.index for s in subs] == [1, 2, 3]
    assert [(s.start.total_seconds(), s.end.total_seconds()) for s in subs] == [(0, 10), (20, 30), (30, 40)]
    # one sanitiser for SRT and VTT: no timing arrow survives, tags are shown as look-alikes, never markup
    assert subs[0].content == "A red car parks.\nA man gets out & waves → at the ‹camera›."
    assert subs[1].content == "=SUM(A1) The man walks off."


def test_chapters_merge_repeats_and_never_overlap() -> None:
    segments = [
        seg(0, "Quiet street. Nothing.", start_ms=0, end_ms=10_000),
        seg(1, "Quiet street. Still nothing.", start_ms=8_000, end_ms=18_000),
        seg(2, "A bus passes. Loud.", start_ms=16_000, end_ms=26_000),
        seg(3, "x", structured={"title": "Bus gone"}, start_ms=24_000, end_ms=34_000),
    ]
    cues = list(webvtt.from_string(render("chapters", segments)))
    assert [(c.start, c.end, c.text) for c in cues] == [
        ("00:00:00.000", "00:00:18.000", "Quiet street"),
        ("00:00:18.000", "00:00:26.000", "A bus passes"),
        ("00:00:26.000", "00:00:34.000", "Bus gone"),
    ]


def test_edl_parses_with_otio_cmx3600_at_ntsc_timecode() -> None:
    text = render("edl")
    assert text.startswith("TITLE: gate 3.mp4\nFCM: NON-DROP FRAME\n")
    timeline = otio.adapters.read_from_string(text, adapter_name="cmx_3600", rate=30000 / 1001)
    clips = list(timeline.find_clips())
    assert len(clips) == 3, "every described segment when no min_score is given"
    starts = [c.source_range.start_time.to_seconds() for c in clips]
    assert starts == pytest.approx([0, 20, 30], abs=1 / 29.97), "in-points: the true times, to a frame"
    record = [c.range_in_parent().start_time.value for c in clips]
    assert record == sorted(record) and record[0] == 0, "record times run back to back"


def test_edl_min_score_keeps_threats_and_highlights() -> None:
    text = render("edl", min_score="0.9")
    tl = otio.adapters.read_from_string(text, adapter_name="cmx_3600", rate=30000 / 1001)
    assert len(list(tl.find_clips())) == 1 and "segment 2 score 1.00: Man leaves" in text
    sports = [
        seg(0, "Kick-off.", structured={"highlights": [
            {"start": "00:02", "end": "00:05", "what": "Shot on goal", "score": 0.8},
            {"start": 6.0, "end": 7.0, "what": "Throw-in", "score": 0.1},
            {"start": 8.0, "end": 99.0, "what": "Goal!", "score": 0.95},
        ]}),
        seg(1, "Replay.", structured={"score": 0.2}),
    ]  # fmt: skip
    edl = render("edl", sports, min_score="0.5")
    tl = otio.adapters.read_from_string(edl, adapter_name="cmx_3600", rate=30000 / 1001)
    ranges = [(c.source_range.start_time.to_seconds(), c.source_range.end_time_exclusive().to_seconds())
              for c in tl.find_clips()]  # fmt: skip
    flat = [t for r in ranges for t in r]
    assert flat == pytest.approx([2, 5, 8, 10], abs=1 / 29.97), "highlights above the score, clamped"
    with pytest.raises(InputError, match="min_score"):
        render("edl", min_score="high")


def test_otio_reads_back_with_opentimelineio() -> None:
    timeline = otio.adapters.read_from_string(render("otio"), adapter_name="otio_json")
    clips = list(timeline.find_clips())
    assert [c.metadata["framescribe"]["segment"] for c in clips] == [0, 2, 3]
    assert clips[1].name == "Man leaves"
    assert clips[0].media_reference.target_url == "file:///videos/gate%203.mp4"
    assert [c.source_range.start_time.to_seconds() for c in clips] == pytest.approx([0, 20, 30], abs=1 / 29.97)
    assert timeline.duration().to_seconds() == pytest.approx(30, abs=0.05)


def test_markdown_report_has_times_badges_and_failures() -> None:
    text = render("md")
    assert text.startswith("# gate 3.mp4\n")
    assert "### 00:00–00:10 · segment 0 · done" in text
    assert "**failed:** decode error at 00:12" in text
    assert "threat level: 3" in text
    assert "\\<camera\\>" in text and "A car & a man \\<arrive\\>." in text, "model text cannot inject HTML"


def test_scores_and_reported_times() -> None:
    assert score_of({"threat_level": 3}) == 1.0 and score_of({"threat_level": 0}) == 0.0
    assert score_of({"highlights": [{"start": 1, "end": 2, "score": 0.7}]}) == 0.7
    assert score_of({"motion": {"score": 0.5}}) is None, "nested numbers are not a highlight score"
    assert score_of({"score": "nan"}) is None and score_of({"score": True}) is None
    assert [to_ms(v) for v in (1.5, "01:02", "1:00:00.5", "soon", None)] == [1500, 62_000, 3_600_500, None, None]
    picked = list(cuts([seg(0, "a", structured={"threat_level": 2}), seg(1, "b")], 0.5))
    assert [c.index for c in picked] == [0], "unscored segments drop out once a score is asked for"


def _two_hours(count: int, pulled: list[int]) -> Iterator[dict[str, Any]]:
    for i in range(count):
        pulled[0] += 1
        yield seg(i, f"Segment {i}: a long description of what happens. " * 8, structured={"threat_level": i % 4})


@pytest.mark.parametrize("fmt", ALL)
def test_every_format_streams(fmt: str) -> None:
    """Each chunk needs at most one more segment: nothing is collected before writing."""
    pulled = [0]
    fn, _, _ = renderer(fmt)
    chunks = fn(ExportInput(JOB, _two_hours(720, pulled)))
    for seen in range(1, 41):
        next(chunks)
        assert pulled[0] <= seen, f"{fmt} read {pulled[0]} segments to write {seen} chunks"
    rest = sum(len(c) for c in chunks)
    assert pulled[0] == 720 and rest > 0


def _render_traced(fmt: str, result: Any) -> None:
    fn, _, _ = renderer(fmt)
    tracemalloc.start()
    total = sum(len(c) for c in fn(ExportInput(JOB, _two_hours(3000, [0]))))
    _, peak = tracemalloc.get_traced_memory()
    result.put((total, peak))


@pytest.mark.parametrize("fmt", ALL)
def test_memory_is_flat_for_a_long_job(fmt: str) -> None:
    """3,000 segments (8 hours at 10 s) render with a peak far below the output's size."""
    # measured in a forked child: only this thread exists there, so no other test's leftover thread
    # (an SSE viewer, a sender) can allocate while the peak is traced
    ctx = multiprocessing.get_context("fork")
    result = ctx.Queue()
    child = ctx.Process(target=_render_traced, args=(fmt, result))
    child.start()
    total, peak = result.get(timeout=120)
    child.join(30)
    assert total > 250_000
    assert peak < total / 10, f"{fmt}: peak {peak} bytes for {total} bytes of output"


def test_timecode_rates() -> None:
    assert [tc_rate(f) for f in (30000 / 1001, 25, 15, 24000 / 1001, 50, 59.94)] == [30, 25, 30, 24, 50, 60]
    assert tc_fps(30, 30000 / 1001) == pytest.approx(29.97, abs=0.001) and tc_fps(30, 15) == 30
