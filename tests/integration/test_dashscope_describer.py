"""The DashScope describer end to end: pipeline -> real ``dashscope`` SDK / ``openai`` client -> loopback fake.

Jobs run on ``clip_12s`` (12 s, 320x240, 25 fps). Unless a test says otherwise: 1 fps, 4 s segments
(3 segments of 4 frames), two calls in flight, continuity on (each prompt carries the previous
description, so prompts and token counts are deterministic). Retry waits are recorded, not slept.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import dashscope
import pytest
from sqlalchemy import select

from tests.fakes.dashscope_server import Behavior, FakeDashScope, RecordedRequest, video_tokens
from worker.adapters.describers import inline, retry
from worker.adapters.describers.dashscope import DashScopeDescriber, build
from worker.adapters.describers.retry import RetryPolicy, with_retries
from worker.adapters.describers.transport import AUTH_HINT, Reply, classify, parse_retry_after
from worker.adapters.stores.schema import SegmentDbRow
from worker.adapters.stores.sql import SqlResultStore
from worker.adapters.video.opencv import OpenCVReader
from worker.bootstrap import build_ports
from worker.config import Settings, load_settings
from worker.core.models import JobSummary, SegmentRow
from worker.core.ports import DescribeRequest
from worker.core.timecode import clock
from worker.errors import (
    BudgetExceeded,
    DescriberAuthError,
    DescriberRejected,
    DescriberTransient,
    PlanError,
)
from worker.options import JobOptions
from worker.service import pipeline
from worker.service import plan as planning
from worker.service.context import Ports
from worker.summarise import summarise

KEY = "sk-test-SECRET-7f3a"
MODEL = "qwen-vl-max-latest"


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDashScope]:
    old_no_proxy, old_url = os.environ.get("NO_PROXY"), dashscope.base_http_api_url
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    with FakeDashScope() as server:
        yield server
    dashscope.base_http_api_url = old_url
    if old_no_proxy is None:
        os.environ.pop("NO_PROXY", None)
    else:
        os.environ["NO_PROXY"] = old_no_proxy


def _reply(rec: RecordedRequest) -> str:
    if not rec.videos:  # a text call: the job summary
        return f"SUMMARY over {sum(ln.startswith('[') for ln in (rec.prompt or '').splitlines())} notes."
    v = rec.videos[0]
    return f"Segment of {len(v.frames)} frames at {v.fps:g} fps: a test pattern scrolls."


@pytest.fixture(autouse=True)
def _clean(fake: FakeDashScope, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    fake.reset()
    fake.reply_fn = _reply
    yield
    fake.reset()


@pytest.fixture(autouse=True)
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff waits the retry loop asked for (recorded instead of slept)."""
    seen: list[float] = []
    monkeypatch.setattr(retry, "_sleep", seen.append)
    return seen


def make_settings(tmp_path: Path, fake: FakeDashScope, *, fps: float = 1, **dashscope_: Any) -> Settings:
    ds = {
        "api_key": KEY,
        "base_url": fake.base_http_api_url,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "retry_budget_s": 30,
        "max_attempts": 4,
        "breaker_failures": 50,  # the circuit breaker has its own tests (test_dashscope_spend.py)
        **dashscope_,
    }
    return load_settings(
        data_dir=tmp_path / "data",
        describer={"kind": "dashscope", "concurrency": 2, "continuity": True},
        sampling={"fps": fps, "segment_seconds": 4},
        dashscope=ds,
    )


Events = list[tuple[str, dict[str, Any]]]


def run(settings: Settings, video: Path, events: Events | None = None, **opts: Any) -> tuple[Ports, str, JobSummary]:
    """One job in process, as ``framescribe run`` does it."""
    seen: Events = [] if events is None else events
    ports = build_ports(settings, on_event=lambda kind, data: seen.append((kind, data)))
    job, _ = ports.store.create_job(str(video), video.name, JobOptions.parse(opts).stored())
    return ports, job.id, pipeline.run_inline(ports, job.id)


def rows(ports: Ports, job_id: str) -> list[SegmentRow]:
    return list(ports.store.segment_rows(job_id))


def flags_of(store: SqlResultStore, job_id: str) -> dict[int, list[str]]:
    with store.session() as s:
        found = s.scalars(select(SegmentDbRow).where(SegmentDbRow.job_id == job_id)).all()
        return {r.index: list(r.flags or []) for r in found}


def video_calls(fake: FakeDashScope, kind: str = "generation") -> list[RecordedRequest]:
    """Model requests that carried frames (not the summary or JSON-repair text calls)."""
    return [r for r in fake.requests_of(kind) if r.videos]


# ------------------------------------------------------------------------------------------ the happy path
@pytest.mark.parametrize("frames_as", ["auto", "upload"])
def test_every_segment_sends_its_frames_true_fps_and_prompt(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, caplog: pytest.LogCaptureFixture, frames_as: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="worker")
    settings = make_settings(tmp_path, fake, fps=2, frames_as=frames_as)
    ports, job_id, summary = run(settings, clip_12s)
    assert summary.state == "done" and summary.segments_done == 3
    calls = video_calls(fake)
    assert len(calls) == 3
    segs = rows(ports, job_id)
    for row in segs:
        local = [Path(f.path).read_bytes() for f in ports.store.frames(job_id, row.index)]
        (rec,) = [c for c in calls if c.frames[0] == local]  # the bytes sent are exactly our JPEGs
        assert rec.fps == float(Fraction(row.fps or "0")) == 2.0
        assert f"from {clock(row.start_ms)} to {clock(row.end_ms)}" in (rec.prompt or "")
        assert "clip12.mp4" in (rec.prompt or "") and rec.system == ports.prompts["describe"].system
        assert rec.api_key == KEY and rec.model == MODEL
        if frames_as == "upload":  # uploaded to DashScope's temporary storage, sent as oss:// URLs
            assert rec.headers.get("x-dashscope-ossresourceresolve") == "enable"
            assert all(u.startswith("oss://") for u in rec.videos[0].urls)
        else:  # small segments: inside the request, no getPolicy or upload request
            assert "x-dashscope-ossresourceresolve" not in rec.headers
            assert all(u.startswith("data:image/jpeg;base64,") for u in rec.videos[0].urls)
        assert rec.parameters["seed"] == 1234 and rec.parameters["max_tokens"] == 800
        # usage as billed by the fake's documented formula, and who answered
        w, h = ports.store.frames(job_id, row.index)[0].width, ports.store.frames(job_id, row.index)[0].height
        assert row.video_tokens == video_tokens(len(local), w, h, MODEL)
        assert row.input_tokens > row.video_tokens and row.output_tokens > 0
        assert row.request_id and row.latency_ms > 0 and row.describer == "dashscope" and row.model == MODEL
        assert row.description == _reply(rec)
    # continuity: segment k's prompt quotes segment k-1's description
    by_start = sorted(calls, key=lambda c: c.received_at)
    assert "Previously:" not in (by_start[0].prompt or "")
    assert f"Previously: {segs[0].description}" in (by_start[1].prompt or "")
    # summed per job; the summary is the model's text call over the descriptions
    usage = ports.store.usage(job_id)
    assert usage["video_tokens"] == summary.video_tokens == sum(r.video_tokens for r in segs)
    summary_call = [r for r in fake.requests_of("generation") if not r.videos]
    assert len(summary_call) == 1 and segs[2].description in (summary_call[0].prompt or "")
    # the summary call is money too: on a cheap text model, in the job's usage, its calls and the bill
    assert summary_call[0].model == "qwen-plus" and summary_call[0].path.endswith("/text-generation/generation")
    su = ports.store.get_job(job_id).summary["usage"]["summary"]  # type: ignore[index]
    assert su["calls"] == 1 and su["model"] == "qwen-plus" and su["input_tokens"] > 0
    assert usage["input_tokens"] == sum(r.input_tokens for r in segs) + su["input_tokens"] and summary.calls == 4
    assert usage["input_tokens"] == fake.billed_totals()["input_tokens"]
    uploads = (len(fake.requests_of("getPolicy")), len(fake.requests_of("ossUpload")))
    assert uploads == ((3, sum(r.frame_count for r in segs)) if frames_as == "upload" else (0, 0))
    assert usage["output_tokens"] == fake.billed_totals()["output_tokens"]
    assert summary.source == "dashscope" and summary.text == "SUMMARY over 3 notes."
    # the key is never logged or stored
    assert all(KEY not in r.getMessage() for r in caplog.records)
    job = ports.store.get_job(job_id)
    assert KEY not in json.dumps(job.as_dict(), default=str) + json.dumps(job.summary) + repr(segs)


def test_dry_run_estimate_within_two_percent_of_billed(tmp_path: Path, fake: FakeDashScope, clip_12s: Path) -> None:
    for fps, extra in ((1, {}), (2, {"max_pixels": 16 * 32 * 32})):
        settings = make_settings(tmp_path / str(fps), fake, fps=fps, **extra)
        opts = JobOptions()
        with OpenCVReader(clip_12s) as reader:
            est = pipeline.estimate(reader.probe(), opts, settings)
        fake.reset()
        fake.reply_fn = _reply
        ports, job_id, _ = run(settings, clip_12s)
        billed = sum(r.video_tokens for r in rows(ports, job_id))
        assert est.calls == len(video_calls(fake)) == 3
        assert abs(est.video_tokens - billed) <= 0.02 * billed, (fps, est.video_tokens, billed)
        if extra:  # the per-frame cap went to DashScope with the frames, and lowered the bill
            assert all(c.videos[0].item.get("max_pixels") == extra["max_pixels"] for c in video_calls(fake))


def test_openai_transport_stores_the_same_rows(tmp_path: Path, fake: FakeDashScope, clip_12s: Path) -> None:
    def stored(transport: str) -> list[tuple[Any, ...]]:
        settings = make_settings(tmp_path / transport, fake, transport=transport)
        ports, job_id, summary = run(settings, clip_12s)
        assert summary.state == "done"
        return [
            (r.index, r.start_ms, r.end_ms, r.state, r.description, r.input_tokens, r.output_tokens, r.video_tokens,
             r.frame_count, r.describer, r.model, r.fps)
            for r in rows(ports, job_id)
        ]  # fmt: skip

    native = stored("native")
    compat_calls_before = len(fake.requests_of("compatible"))
    openai_rows = stored("openai")
    assert openai_rows == native
    compat = fake.requests_of("compatible")[compat_calls_before:]
    assert [r.fps for r in compat if r.videos] == [1.0, 1.0, 1.0]
    assert all(u.startswith("data:image/jpeg;base64,") for r in compat if r.videos for u in r.videos[0].urls)


# ------------------------------------------------------------------------------------------ errors
def describer(settings: Settings) -> DashScopeDescriber:
    return build(settings)


def request_for(tmp_path: Path, settings: Settings, clip: Path) -> DescribeRequest:
    """One real segment's request (frames decoded and written by the pipeline's own code)."""
    with OpenCVReader(clip) as reader:
        info = reader.probe()
        plan = next(iter(pipeline.plans_for(info, JobOptions(), settings)))
        sampled = pipeline.sample_segment(build_ports(settings), reader, plan, tmp_path / "seg")
    return DescribeRequest("job", clip.name, plan, sampled.frames, float(plan.fps), "Describe.", "sys", "describe")


def test_auto_uploads_the_frames_of_a_segment_too_large_to_send_inline(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``frames_as: auto`` sends a segment's frames inside the request up to 7 MiB (here: lowered to one
    frame's size), above that it uploads them; ``data_uri`` refuses more frames than DashScope takes."""
    settings = make_settings(tmp_path, fake)
    req = request_for(tmp_path, settings, clip_12s)
    sizes = [Path(f.path).stat().st_size for f in req.frames]
    monkeypatch.setattr(inline, "MAX_INLINE_BYTES", sum(sizes) - 1)
    describer(settings).describe(req)
    (rec,) = video_calls(fake)
    assert all(u.startswith("oss://") for u in rec.videos[0].urls)
    assert len(fake.requests_of("ossUpload")) == len(sizes)
    fake.reset()
    monkeypatch.setattr(inline, "MAX_INLINE_BYTES", sum(sizes))
    describer(settings).describe(req)
    (rec,) = video_calls(fake)
    assert all(u.startswith("data:") for u in rec.videos[0].urls) and not fake.requests_of("ossUpload")
    fake.reset()
    monkeypatch.setattr(inline, "MAX_FRAMES", len(sizes) - 1)
    with pytest.raises(DescriberRejected, match=f"at most {len(sizes) - 1} as data URIs"):
        describer(make_settings(tmp_path, fake, frames_as="data_uri")).describe(req)
    assert not fake.requests  # refused before anything was sent
    describer(settings).describe(req)  # auto: too many to send inline, so uploaded
    assert len(fake.requests_of("ossUpload")) == len(sizes)


@pytest.mark.parametrize("frames_as", ["auto", "upload"])
def test_throttling_5xx_and_resets_are_retried_honouring_retry_after(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, waits: list[float], frames_as: str
) -> None:
    settings = make_settings(tmp_path, fake, frames_as=frames_as)
    req = request_for(tmp_path, settings, clip_12s)
    fake.enqueue(
        Behavior.error("Throttling.RateQuota", retry_after=7),
        Behavior.error("InternalError"),
        Behavior.error("ModelUnavailable"),
    )
    desc = describer(settings).describe(req)
    assert desc.usage.attempts == 4 and desc.usage.video_tokens > 0
    assert waits[0] >= 7  # Retry-After honoured, above the 0.05 s backoff cap
    assert all(w <= 0.05 for w in waits[1:])
    assert len(video_calls(fake)) == 4 and fake.pending == 0
    # a dropped connection: the SDK's own silent re-send is refused, so every HTTP request is one of
    # our counted attempts (two resets, then a success: three attempts, three model requests)
    fake.reset()
    fake.enqueue(Behavior(reset=True), Behavior(reset=True))
    usage = describer(settings).describe(req).usage
    # uploads: +1, the fake's reset forgot them, so the re-used oss:// URLs were refused once (a 400, not
    # billed) and the frames uploaded again; data URIs carry the frames in every request
    sent = 4 if frames_as == "upload" else 3
    assert usage.attempts == 3 and usage.http_attempts == len(fake.requests_of("generation")) == sent
    # garbage (200, not JSON), plain and streamed
    for stream in (False, True):
        fake.reset()
        fake.enqueue(Behavior(garbage=True))
        desc = describer(make_settings(tmp_path, fake, stream=stream)).describe(req)
        assert desc.usage.attempts == 2 and desc.text.startswith("[fake")


def test_retries_are_bounded_in_attempts_and_time(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, waits: list[float]
) -> None:
    settings = make_settings(tmp_path, fake)
    req = request_for(tmp_path, settings, clip_12s)
    fake.default_behavior = Behavior.error("InternalError")
    with pytest.raises(DescriberTransient, match=r"DashScope 500 InternalError.*gave up after 4 attempts"):
        describer(settings).describe(req)
    assert len(video_calls(fake)) == 4 and len(waits) == 3
    fake.reset()
    fake.default_behavior = Behavior(garbage=True)
    with pytest.raises(DescriberTransient, match=r"not JSON.*gave up after 4"):
        describer(settings).describe(req)
    fake.reset()
    fake.default_behavior = Behavior.error("Throttling", retry_after=60)  # longer than the 30 s budget
    with pytest.raises(DescriberTransient, match="would pass the retry budget of 30s"):
        describer(settings).describe(req)
    assert len(fake.requests_of("generation")) == 1


@pytest.mark.parametrize("code", ["InvalidParameter", "DataInspectionFailed"])
def test_rejected_segment_fails_with_dashscope_message_job_partial(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, code: str
) -> None:
    fake.enqueue(Behavior.error(code, message=f"scripted {code} message"))
    ports, job_id, summary = run(make_settings(tmp_path, fake), clip_12s)
    assert summary.state == "partial" and summary.segments_done == 2 and summary.segments_failed == 1
    (failed,) = [r for r in rows(ports, job_id) if r.state == "failed"]
    assert f"DashScope 400 {code}: scripted {code} message" in (failed.error or "")
    assert len(video_calls(fake)) == 3  # not retried
    assert ports.store.get_job(job_id).state == "partial"


@pytest.mark.parametrize("case", ["bad key at upload", "403 at generation", "401 openai"])
def test_auth_failure_fails_the_job_at_once(tmp_path: Path, fake: FakeDashScope, clip_12s: Path, case: str) -> None:
    over: dict[str, Any] = {"api_key": "not-a-valid-key"}
    if case == "403 at generation":
        over = {}
        fake.default_behavior = Behavior.error("AccessDenied")
    if case == "401 openai":
        over["transport"] = "openai"
    ports, job_id, summary = run(make_settings(tmp_path, fake, **over), clip_12s)
    job = ports.store.get_job(job_id)
    assert summary.state == job.state == "failed"
    assert AUTH_HINT in (job.error or "")
    states = [r.state for r in rows(ports, job_id)]
    assert "done" not in states and "cancelled" in states  # stopped: later segments never started
    # at most the two calls already in flight were made, and none was retried
    assert len(fake.requests_of("generation") + fake.requests_of("compatible") + fake.requests_of("getPolicy")) >= 1
    assert len(fake.requests_of("generation") + fake.requests_of("compatible")) <= 2
    assert len(fake.requests_of("getPolicy")) <= 2
    assert summary.source == "local"


def test_classify_and_retry_after_parsing() -> None:
    assert isinstance(classify(429, "Throttling.BurstRate", "slow down"), DescriberTransient)
    assert isinstance(classify(400, "InternalError", "stream interrupted"), DescriberTransient)  # SDK's SSE status
    assert isinstance(classify(503, "ModelUnavailable", ""), DescriberTransient)
    assert isinstance(classify(400, "InvalidParameter", "bad"), DescriberRejected)
    auth = classify(403, "AccessDenied.Unpurchased", "no", "rid-1")
    assert isinstance(auth, DescriberAuthError) and "rid-1" in auth.message and AUTH_HINT in auth.message
    assert isinstance(classify(404, "ModelNotFound", "Model not exist."), DescriberAuthError)
    assert parse_retry_after("2.5") == 2.5 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: retry now


def test_with_retries_unit() -> None:
    policy = RetryPolicy(max_attempts=5, base_s=1, max_s=4, budget_s=100)
    seen: list[float] = []
    outcomes: list[Exception | str] = [DescriberTransient("a"), DescriberTransient("b", retry_after_s=9), "ok"]

    def attempt(n: int) -> str:
        item = outcomes[n - 1]
        if isinstance(item, Exception):
            raise item
        return item

    assert with_retries(attempt, policy, what="t", sleep=seen.append, rand=lambda: 1.0) == ("ok", 3)
    assert seen == [1.0, 9.0]
    assert [policy.delay(n, None, lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 2.0, 2.0]
    with pytest.raises(DescriberRejected):
        with_retries(lambda n: (_ for _ in ()).throw(DescriberRejected("no")), policy, what="t", sleep=seen.append)


# ------------------------------------------------------------------------------------------ budgets and limits
def test_over_estimate_fails_before_any_call_saying_by_how_much(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path
) -> None:
    settings = make_settings(tmp_path, fake)
    with OpenCVReader(clip_12s) as reader:
        est = pipeline.estimate(reader.probe(), JobOptions(), settings)
    for opts, needle in (
        ({"max_video_tokens": est.video_tokens - 5}, f"exceed the cap of {est.video_tokens - 5} by 5"),
        ({"max_calls": 1}, "needs 3 model calls, 2 more than the cap of 1"),
    ):
        ports = build_ports(settings)
        job, _ = ports.store.create_job(str(clip_12s), clip_12s.name, JobOptions.parse(opts).stored())
        with pytest.raises(BudgetExceeded, match=needle):
            pipeline.run_inline(ports, job.id)
        assert ports.store.get_job(job.id).state == "failed"
    assert fake.requests == []


@pytest.mark.parametrize("cap", ["max_calls", "max_video_tokens"])
def test_running_job_stops_cleanly_at_a_cap(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, monkeypatch: pytest.MonkeyPatch, cap: str
) -> None:
    """The estimate can be wrong (a model snapshot billed differently, a retried job): the guard while
    running must hold on its own, so the pre-flight check is switched off here."""
    monkeypatch.setattr(planning, "check_budget", lambda *a: None)
    settings = make_settings(tmp_path, fake)
    with OpenCVReader(clip_12s) as reader:
        per_segment = pipeline.estimate(reader.probe(), JobOptions(), settings).video_tokens // 3
    value = 2 if cap == "max_calls" else 2 * per_segment + per_segment // 2
    ports, job_id, summary = run(settings, clip_12s, **{cap: value})
    assert summary.state == "partial" and summary.segments_done == 2
    assert len(video_calls(fake)) == 2  # the third call was never made
    last = rows(ports, job_id)[2]
    assert last.state == "failed" and "cap of" in (last.error or "")  # the segment that met the cap
    assert "cap of" in summary.text and ports.store.get_job(job_id).state == "partial"


def test_planner_uses_the_model_frame_limit(tmp_path: Path, fake: FakeDashScope, clip_12s: Path) -> None:
    settings = make_settings(tmp_path, fake)
    opts = JobOptions(model="some-future-vl", fps=25, segment_seconds=4)  # unknown model: 80 frames a request
    with OpenCVReader(clip_12s) as reader, pytest.raises(PlanError, match="model's limit of 80"):
        pipeline.estimate(reader.probe(), opts, settings)
    local = JobOptions(describer="local", fps=25, segment_seconds=4)  # no model, no such limit
    with OpenCVReader(clip_12s) as reader:
        assert pipeline.estimate(reader.probe(), local, settings).segments == 3


def test_per_job_model_and_parameters_reach_the_request(tmp_path: Path, fake: FakeDashScope, clip_12s: Path) -> None:
    ports, job_id, summary = run(
        make_settings(tmp_path, fake, frames_as="upload"), clip_12s, model="qwen-vl-plus-latest", temperature=0.7,
        top_p=0.5, vl_high_resolution_images=True, end_s=4,
    )  # fmt: skip
    assert summary.state == "done"
    (rec,) = video_calls(fake)
    assert rec.model == "qwen-vl-plus-latest"
    assert rec.parameters["temperature"] == 0.7 and rec.parameters["top_p"] == 0.5
    assert rec.parameters["vl_high_resolution_images"] is True
    assert fake.requests_of("getPolicy")[0].model == "qwen-vl-plus-latest"  # uploads are bound to the model
    assert rows(ports, job_id)[0].model == "qwen-vl-plus-latest"


# ------------------------------------------------------------------------------------------ presets
SURV = {
    "title": "Quiet scene",
    "summary": "A pattern scrolls.",
    "people": [],
    "vehicles": [],
    "activity": "none",
    "concerns": [],
    "threat_level": 0,
    "events": [{"start": 0.5, "end": 1.5, "what": "bars move"}, {"start": 2, "end": 30, "what": "runs on"}],
}


def test_surveillance_json_validated_and_times_made_true(tmp_path: Path, fake: FakeDashScope, clip_12s: Path) -> None:
    fake.reply_fn = lambda rec: json.dumps(SURV) if rec.videos else "SUMMARY."
    settings = make_settings(tmp_path, fake, fps=2)
    ports, job_id, summary = run(settings, clip_12s, preset="surveillance", start_s=4, end_s=8)
    assert summary.state == "done"
    (row,) = rows(ports, job_id)
    frames = ports.store.frames(job_id, 0)
    events = row.structured["events"]
    # 0.5 s into a 2 fps clip is frame 1, whose true time (25 fps source) is 4.52 s, not 4.5 s
    assert events[0]["start_ms"] == frames[1].t_ms == 4520 and events[0]["end_ms"] == frames[3].t_ms
    assert events[1]["end_ms"] == row.end_ms and events[1]["flags"] == ["time_out_of_range"]
    assert flags_of(ports.store, job_id)[0] == ["time_out_of_range"]
    assert row.description == "Quiet scene: A pattern scrolls. (threat level 0)"
    assert '"threat_level"' in (video_calls(fake)[0].prompt or "")


def test_malformed_json_gets_one_repair_then_raw_text_is_kept(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path
) -> None:
    good = json.dumps({"summary": "Goal!", "events": [], "highlights": [{"start": 1, "what": "goal", "score": 0.8}]})
    settings = make_settings(tmp_path, fake)
    fake.enqueue(Behavior.reply("Sure! {summary: 'Goal'}"), Behavior.reply(f"```json\n{good}\n```"))
    ports, job_id, _ = run(settings, clip_12s, preset="sports", end_s=4)
    (row,) = rows(ports, job_id)
    assert row.description == "Goal! Top highlight: goal" and row.structured["highlights"][0]["start_ms"] == 1000
    assert flags_of(ports.store, job_id)[0] == ["json_repaired"]
    repair = fake.requests_of("generation")[1]
    assert (
        not repair.videos and "does not parse" in (repair.prompt or "") and "{summary: 'Goal'}" in (repair.prompt or "")
    )
    first = fake.requests_of("generation")[0]
    assert row.input_tokens > row.video_tokens and row.output_tokens > 0 and first.videos

    fake.reset()
    fake.enqueue(Behavior.reply("no json at all"), Behavior.reply("still {not json"))
    ports, job_id, _ = run(make_settings(tmp_path / "b", fake), clip_12s, preset="sports", end_s=4)
    (row,) = rows(ports, job_id)
    assert row.state == "done" and row.description == "no json at all"  # the raw reply, flagged
    assert flags_of(ports.store, job_id)[0] == ["invalid_json"] and "json_error" in row.structured
    assert len(fake.requests_of("generation")) == 3  # call, one repair, the summary; no second repair


def test_custom_prompt_on_a_json_preset_still_asks_for_json(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path
) -> None:
    fake.reply_fn = lambda rec: json.dumps(SURV)
    run(make_settings(tmp_path, fake), clip_12s, preset="surveillance", prompt="Watch $start to $end.", end_s=4)
    prompt = video_calls(fake)[0].prompt or ""
    assert prompt.startswith("Watch 00:00 to 00:04.") and '"threat_level"' in prompt


# ------------------------------------------------------------------------------------------ streaming
@pytest.mark.parametrize("transport", ["native", "openai"])
def test_streaming_shows_text_live_and_stores_the_whole_reply(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, transport: str
) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    settings = make_settings(tmp_path, fake, stream=True, transport=transport)
    fake.enqueue(Behavior(stream_error_after=2, code="InternalError"))  # broken mid-stream: retried
    ports, job_id, summary = run(settings, clip_12s, events, end_s=8)
    assert summary.state == "done"
    live = [d for k, d in events if k == "segment_text"]
    for row in rows(ports, job_id):
        pieces = [d for d in live if d["index"] == row.index]
        assert len(pieces) > 3 and pieces[-1]["text"] == row.description
        assert all(b["text"].startswith(a["text"]) or b["text"] == b["delta"] for a, b in itertools.pairwise(pieces))
        assert row.video_tokens > 0 and row.output_tokens > 0
    kind = "generation" if transport == "native" else "compatible"
    # the fake breaks streams mid-way only in native mode (SSE event:error): one more call there
    assert all(r.stream for r in video_calls(fake, kind))
    assert len(video_calls(fake, kind)) == (3 if transport == "native" else 2)


# ------------------------------------------------------------------------------------------ the job summary
class Scripted:
    """A TextModel that answers from a script and records every prompt."""

    summary_model = MODEL

    def __init__(self, fail: Exception | None = None) -> None:
        self.prompts: list[str] = []
        self.fail = fail

    def complete(
        self, system: str, prompt: str, *, what: str = "", job_id: str = "", guard: Any = None
    ) -> tuple[Reply, int]:
        if self.fail is not None:
            raise self.fail
        self.prompts.append(prompt)
        return Reply(f"part {len(self.prompts)} ({prompt.count(chr(10))} lines)"), 1


def _rows(n: int) -> list[SegmentRow]:
    text = "A long description of what happens in this segment, with people, cars and weather. " * 3
    return [SegmentRow(i, i * 10_000, (i + 1) * 10_000, "done", f"{i}: {text}", {}, 10) for i in range(n)]


def test_long_jobs_are_summarised_in_batches_within_the_input_budget() -> None:
    model = Scripted()
    data = _rows(120)
    out = summarise(lambda: iter(data), 1_200_000, None, model=model, template="Notes:\n$segments",
                    source_name="v.mp4", batch_tokens=2000)  # fmt: skip
    assert out.source == "dashscope" and out.segments_done == 120
    assert len(model.prompts) > 3
    assert max(len(p.encode()) // 3 + 1 for p in model.prompts) <= 2000  # no call above the batch budget
    assert out.text == f"part {len(model.prompts)} ({model.prompts[-1].count(chr(10))} lines)"
    assert model.prompts[-1].count("part ") >= 2  # the last call summarised batch summaries
    first_round = "".join(model.prompts[:-1])
    assert all(f"{i}: A long" in first_round for i in (0, 59, 119))  # every segment was seen once


def test_summary_falls_back_to_local_on_model_failure() -> None:
    out = summarise(lambda: iter(_rows(3)), 30_000, "stopped early: test", model=Scripted(DescriberTransient("down")),
                    template="$segments", source_name="v.mp4", batch_tokens=5000)  # fmt: skip
    assert out.source == "local" and out.state == "partial" and "3 of 3 segments described" in out.text
    ok = summarise(lambda: iter(_rows(3)), 30_000, "stopped early: test", model=Scripted(), template="$segments",
                   source_name="v.mp4", batch_tokens=5000)  # fmt: skip
    assert ok.text == "part 1 (2 lines) (stopped early: test.)" and ok.state == "partial"


def test_summary_call_failure_keeps_the_job_and_uses_local(tmp_path: Path, fake: FakeDashScope, clip_12s: Path) -> None:
    fake.reply_fn = lambda rec: "seg" if rec.videos else "never"
    fake.key_behaviors[KEY] = Behavior.error("InvalidParameter", message="Range of input length should be [1, 6000]")
    fake.enqueue(Behavior.reply("a"), Behavior.reply("b"), Behavior.reply("c"))
    ports, job_id, summary = run(make_settings(tmp_path, fake), clip_12s)
    assert summary.state == "done" and summary.source == "local" and "3 of 3 segments described" in summary.text
    assert ports.store.get_job(job_id).summary == summary.as_dict()


# ------------------------------------------------------------------------------------------ concurrency
def test_calls_in_flight_are_capped_process_wide(tmp_path: Path, fake: FakeDashScope, clip_12s: Path) -> None:
    """Two describers (two jobs' settings) share one gate of ``describer.concurrency`` calls."""
    settings = make_settings(tmp_path, fake)  # concurrency 2
    req = request_for(tmp_path, settings, clip_12s)
    first, second = build(settings), build(make_settings(tmp_path, fake, temperature=0.9))
    results: list[str] = []
    fake.hold()
    threads = [threading.Thread(target=lambda d=d: results.append(d.describe(req).text)) for d in (first, second) * 2]
    for t in threads:
        t.start()
    assert fake.wait_for_held(2, timeout=20)
    assert not fake.wait_for_held(3, timeout=1.0)  # the other two wait for a slot, not at the server
    fake.release()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 4 and len(video_calls(fake)) == 4


def test_segment_tasks_stop_at_a_cap_one_by_one(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Celery path (plan, run_segment per segment, finish): a segment that would pass the cap fails
    with the reason and makes no call; segments already described keep their results."""
    monkeypatch.setattr(planning, "check_budget", lambda *a: None)
    ports = build_ports(make_settings(tmp_path, fake))
    job, _ = ports.store.create_job(str(clip_12s), clip_12s.name, {"max_calls": 2})
    indexes = pipeline.plan(ports, job.id)
    assert [pipeline.run_segment(ports, job.id, i) for i in indexes] == ["done", "done", "failed"]
    summary = pipeline.finish(ports, job.id)
    assert summary is not None and summary.state == "partial" and "call cap of 2" in summary.text
    assert "call cap of 2 reached" in (rows(ports, job.id)[2].error or "")
    assert len(video_calls(fake)) == 2
    assert f"Previously: {rows(ports, job.id)[0].description}" in (video_calls(fake)[1].prompt or "")
