"""Every token accounted for (issue 15): caps that hold, usage that matches the bill, outages that stop.

Real ``dashscope`` SDK against the loopback fake, whose ``billed`` ledger is the bill: every request
it processed (a reply lost after processing is billed too). Jobs run on ``clip_12s`` (12 s, 320x240).
"""

# ruff: noqa: F811  (the fixtures are imported from test_dashscope_describer and used by name)
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fakes.dashscope_server import Behavior, FakeDashScope, RecordedRequest
from tests.integration.test_dashscope_describer import (  # noqa: F401 - fixtures
    SURV,
    _clean,
    fake,
    make_settings,
    request_for,
    rows,
    run,
    waits,
)
from worker.adapters.describers.breaker import Breaker
from worker.adapters.describers.dashscope import breaker_scope, build
from worker.adapters.video.opencv import OpenCVReader
from worker.bootstrap import build_ports, drain, inline_ports
from worker.config import load_settings
from worker.errors import DescriberTransient, DescriberUnavailable
from worker.options import JobOptions
from worker.service import jobs, pipeline
from worker.service import plan as planning
from worker.service.context import Ports


def billed_video(fake: FakeDashScope) -> int:
    return fake.billed_totals()["video_tokens"]


def assert_stored_equals_billed(ports: Ports, job_id: str, fake: FakeDashScope) -> dict[str, int]:
    """Stored usage (segments + repairs + summary) = the fake's bill. A reply lost after processing is
    stored at its estimate (exact for input and video tokens; its output tokens cannot be known)."""
    usage = ports.store.usage(job_id)
    bill = fake.billed_totals()
    assert usage["video_tokens"] == bill["video_tokens"]
    assert usage["input_tokens"] == bill["input_tokens"]
    lost = any("usage_estimated" in r.flags for r in rows(ports, job_id)) or any(
        r.behavior is not None and r.behavior.reset_after for r in fake.requests
    )  # a failed row holds the lost request's estimate without a flag
    if lost:
        assert usage["output_tokens"] <= bill["output_tokens"]
    else:
        assert usage["output_tokens"] == bill["output_tokens"]
    return usage


def per_segment(settings: Any, clip: Path, **opts: Any) -> int:
    """Estimated video tokens of the job's largest-on-average segment, with the segmenter's analysis pass."""
    job_opts = JobOptions.parse(opts)
    with OpenCVReader(clip) as reader:
        info = reader.probe()
        findings = planning.analyse(build_ports(settings), reader, info, job_opts)
    est = pipeline.estimate(info, job_opts, settings, findings)
    return est.video_tokens // max(1, est.calls)


def _reply_for(preset: str):  # type: ignore[no-untyped-def]
    def reply(rec: RecordedRequest) -> str:
        if not rec.videos:
            return "SUMMARY."
        return json.dumps(SURV) if preset == "surveillance" else f"{len(rec.videos[0].frames)} frames."

    return reply


CASES = [  # (dashscope max_pixels, does the server honour it, segmenter, preset, fault)
    (None, "honour", "fixed", "describe", None),
    (16 * 32 * 32, "ignore", "fixed", "describe", None),  # the 4x defect: frames now written that small
    (16 * 32 * 32, "honour", "fixed", "surveillance", None),
    (40_000, "ignore", "scene", "describe", "reset_after"),
    (None, "ignore", "hybrid", "describe", "503"),
    (16 * 32 * 32, "ignore", "fixed", "describe", "no_visual_count"),
    (40_000, "ignore", "motion", "surveillance", "image_tokens"),
    (None, "honour", "fixed", "surveillance", "reset_after"),  # a lost reply: its retry is counted first
    (16 * 32 * 32, "ignore", "motion", "describe", "reset_after"),
    (40_000, "honour", "scene", "surveillance", "503"),
]


@pytest.mark.parametrize(("max_pixels", "mode", "segmenter", "preset", "fault"), CASES)
@pytest.mark.parametrize("cap", ["max_video_tokens", "max_calls"])
def test_billed_never_exceeds_the_cap_and_stored_usage_equals_the_bill(
    tmp_path: Path,
    fake: FakeDashScope,
    clip_12s: Path,
    monkeypatch: pytest.MonkeyPatch,
    cap: str,
    max_pixels: int | None,
    mode: str,
    segmenter: str,
    preset: str,
    fault: str | None,
) -> None:
    monkeypatch.setattr(planning, "check_budget", lambda *a: None)  # the running guard must hold alone
    fake.video_max_pixels = mode
    fake.reply_fn = _reply_for(preset)
    extra = {"max_pixels": max_pixels} if max_pixels else {}
    settings = make_settings(tmp_path, fake, **extra)
    opts: dict[str, Any] = {"segmenter": segmenter, "preset": preset}
    one = per_segment(settings, clip_12s, **opts)
    value = 2 * one + one // 2 if cap == "max_video_tokens" else 3
    if fault == "reset_after":
        fake.enqueue(Behavior(reset_after=True))
    elif fault == "503":
        fake.enqueue(Behavior.error("ServiceUnavailable"), Behavior.error("ServiceUnavailable"))
    elif fault == "no_visual_count":
        fake.usage_field = "none"
    elif fault == "image_tokens":
        fake.usage_field = "image_tokens"
    ports, job_id, _ = run(settings, clip_12s, **opts, **{cap: value})
    if cap == "max_video_tokens":
        assert billed_video(fake) <= value
    else:
        assert fake.billed_totals()["calls"] <= value  # a lost reply's request is counted before the retry
    usage = assert_stored_equals_billed(ports, job_id, fake)
    assert usage["http_attempts"] >= fake.billed_totals()["calls"] - 1  # (-1: the summary's own request)
    for row in rows(ports, job_id):
        frames = ports.store.frames(job_id, row.index)
        if frames and max_pixels:  # written at the size the estimate assumed: nothing left to shrink
            assert all(f.width * f.height <= max_pixels for f in frames)
        if fault == "no_visual_count" and row.state == "done" and row.reused_from is None:
            assert "video_tokens_estimated" in row.flags


@pytest.mark.parametrize("continuity", [True, False])
@pytest.mark.parametrize("cap", ["max_calls", "max_video_tokens"])
def test_a_reply_lost_after_processing_is_counted_before_its_retry(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, monkeypatch: pytest.MonkeyPatch, cap: str, continuity: bool
) -> None:
    """Segment 0's reply is lost after the fake billed it: the retry is a request the caps must allow,
    asked before it is sent (max_calls: 3 requests in all; max_video_tokens: 1.5 segments, so the retry of
    segment 0 is refused rather than billed a second time). Calls one after another and two in flight."""
    monkeypatch.setattr(planning, "check_budget", lambda *a: None)  # the running guard must hold alone
    settings = make_settings(tmp_path, fake)
    update = {"continuity": continuity}
    settings = settings.model_copy(update={"describer": settings.describer.model_copy(update=update)})
    one = per_segment(settings, clip_12s)
    value = 3 if cap == "max_calls" else one + one // 2
    fake.enqueue(Behavior(reset_after=True))
    ports, job_id, summary = run(settings, clip_12s, **{cap: value})
    bill = fake.billed_totals()
    if cap == "max_calls":
        assert bill["calls"] == 3  # the lost request, its retry, segment 1; then nothing (no model summary)
        assert summary.segments_done == 2 and summary.source != "dashscope"
    else:
        assert bill["video_tokens"] == one <= value  # billed once: the retry was refused
        assert summary.segments_done == 0 and "video token cap" in (rows(ports, job_id)[0].error or "")
    assert ports.store.usage(job_id)["http_attempts"] == len(fake.requests_of("generation"))
    assert_stored_equals_billed(ports, job_id, fake)


def test_a_summary_reply_lost_is_counted_before_its_retry(tmp_path: Path, fake: FakeDashScope, clip_12s: Path) -> None:
    """max_calls 4 = three segments + one summary request: the summary's reply is lost after billing;
    its retry would be a fifth request, so the local summary is kept and the bill stays at 4."""
    fake.enqueue(Behavior(), Behavior(), Behavior(), Behavior(reset_after=True))
    ports, job_id, summary = run(make_settings(tmp_path, fake), clip_12s, max_calls=4)
    assert fake.billed_totals()["calls"] == 4 and len(fake.requests_of("generation")) == 4
    assert summary.segments_done == 3 and summary.source != "dashscope"
    assert ports.store.usage(job_id)["http_attempts"] == 4
    assert_stored_equals_billed(ports, job_id, fake)


def test_the_issue_example_max_pixels_no_longer_breaks_the_cap(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path
) -> None:
    """704x544 sampling with dashscope.max_pixels 16x32x32 against a server that ignores max_pixels:
    the estimate, the cap and the bill agree per segment."""
    fake.video_max_pixels = "ignore"
    settings = make_settings(tmp_path, fake, max_pixels=16 * 32 * 32)
    settings = settings.model_copy(update={"sampling": settings.sampling.model_copy(update={"max_pixels": 704 * 544})})
    one = per_segment(settings, clip_12s)
    ports, job_id, _ = run(settings, clip_12s, max_video_tokens=1400)
    assert billed_video(fake) <= 1400
    assert all(r.video_tokens == one for r in rows(ports, job_id) if r.state == "done")
    assert_stored_equals_billed(ports, job_id, fake)


@pytest.mark.parametrize("field", ["both", "video_tokens", "image_tokens", "details", "none"])
def test_visual_tokens_are_read_under_every_field_name(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, field: str
) -> None:
    fake.usage_field = field
    ports, job_id, summary = run(make_settings(tmp_path, fake), clip_12s)
    assert summary.state == "done" and billed_video(fake) > 0
    assert_stored_equals_billed(ports, job_id, fake)
    flagged = ["video_tokens_estimated" in r.flags for r in rows(ports, job_id)]
    assert flagged == [field == "none"] * 3


def test_the_sdk_never_re_sends_and_every_request_is_counted(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path
) -> None:
    """A reply lost after the server processed the request: billed; the SDK's own silent re-send is
    refused, our counted retry makes the next request, and the lost one is stored at its estimate."""
    fake.enqueue(Behavior(reset_after=True))
    ports, job_id, _ = run(make_settings(tmp_path, fake), clip_12s)
    first = rows(ports, job_id)[0]
    assert first.http_attempts == 2 and "usage_estimated" in first.flags
    assert len(fake.requests_of("generation")) == 2 + 2 + 1  # segment 0: 2, segments 1-2: 1 each, summary
    assert ports.store.usage(job_id)["http_attempts"] == len(fake.requests_of("generation"))
    assert_stored_equals_billed(ports, job_id, fake)


def test_a_reset_before_processing_is_stored_as_possibly_billed(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path
) -> None:
    """The client cannot tell a reset before processing from one after: it records the estimate
    (flagged), so stored usage may exceed the bill but never falls short of it."""
    fake.enqueue(Behavior(reset=True))
    ports, job_id, _ = run(make_settings(tmp_path, fake), clip_12s)
    usage, bill = ports.store.usage(job_id), fake.billed_totals()
    assert "usage_estimated" in rows(ports, job_id)[0].flags
    assert usage["video_tokens"] >= bill["video_tokens"] and usage["input_tokens"] >= bill["input_tokens"]


@pytest.mark.parametrize("where", ["getPolicy", "ossUpload", "generation"])
def test_one_deadline_covers_policy_uploads_and_generation(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, where: str
) -> None:
    frames_as = "auto" if where == "generation" else "upload"
    settings = make_settings(tmp_path, fake, timeout_s=1.0, max_attempts=2, frames_as=frames_as)
    req = request_for(tmp_path, settings, clip_12s)
    hang = Behavior(hang=True)
    if where == "getPolicy":
        fake.policy_behavior = hang
    elif where == "ossUpload":
        fake.upload_behavior = hang
    else:
        fake.default_behavior = hang
    started = time.monotonic()
    try:
        with pytest.raises(DescriberTransient, match="gave up after 2 attempts"):
            build(settings).describe(req)
    finally:
        fake.release()
    assert time.monotonic() - started < 6  # two attempts of at most 1 s each (plus SDK overhead)
    assert len(fake.requests_of(where)) == 2
    # the released requests finish (and a generation is billed) now: let them, before the next test
    deadline = time.monotonic() + 10
    while any(r.response_status is None for r in fake.requests) and time.monotonic() < deadline:
        time.sleep(0.05)


def _outage(fake: FakeDashScope, kind: str, before_any: bool) -> None:
    """DashScope goes down at once, or after the first segment is described: ``everything`` (getPolicy,
    uploads and generation answer 503) or only ``generation``."""

    def down() -> None:
        if kind == "everything":
            fake.outage(3600)
        else:
            fake.default_behavior = Behavior.error("ServiceUnavailable")

    first: list[bool] = []

    def reply(rec: RecordedRequest) -> str:
        if rec.videos and not first:
            first.append(True)
            down()
        return "SUMMARY." if not rec.videos else "Described."

    fake.reply_fn = reply
    if before_any:
        first.append(True)
        down()


@pytest.mark.parametrize("before_any", [True, False], ids=["before-any-segment", "after-one-segment"])
@pytest.mark.parametrize("kind", ["everything", "generation"])
def test_an_outage_costs_at_most_n_requests_then_partial_and_retry_reuses_uploads(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, kind: str, before_any: bool
) -> None:
    n = 3
    settings = make_settings(
        tmp_path, fake, breaker_failures=n, max_attempts=5, breaker_cooldown_s=0.3, frames_as="upload"
    )
    settings = settings.model_copy(update={"describer": settings.describer.model_copy(update={"concurrency": 1})})
    _outage(fake, kind, before_any)
    ports, job_id, summary = run(settings, clip_12s)
    job = ports.store.get_job(job_id)
    done = 0 if before_any else 1
    assert summary.state == "partial" and job.state == "partial" and summary.segments_done == done
    assert "DashScope unavailable since" in (job.error or "") and f"framescribe retry {job_id}" in (job.error or "")
    failed = [r for r in fake.requests if r.response_status == 503]
    counted = failed if kind == "everything" else [r for r in failed if r.kind == "generation"]
    assert len(counted) == n  # the circuit opened: nothing more was sent
    uploads_before = len(fake.requests_of("ossUpload"))
    # the outage ends; `framescribe retry JOB --inline`: the job service's retry through the in-process queue
    fake.end_outage()
    fake.default_behavior = None
    time.sleep(0.3)  # the breaker's cooldown: then one probe is let through, and its success closes it
    seen = len(fake.requests)
    fresh = inline_ports(ports.settings)
    assert jobs.retry(fresh, job_id) == 3 - done  # the failed segment and the cancelled ones
    drain(fresh, 60)
    final = ports.store.get_job(job_id)
    assert final.state == "done" and final.summary is not None and final.summary["segments_done"] == 3
    retried = fake.requests[seen:]
    new_uploads = [r for r in retried if r.kind == "ossUpload"]
    if kind == "generation":  # the frames uploaded before the outage are re-used, not re-sent
        assert (uploads_before, len(new_uploads)) == ((4, 8) if before_any else (8, 4))
    assert_stored_equals_billed(ports, job_id, fake)


def test_the_breaker_is_shared_by_workers_through_redis() -> None:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    scope = breaker_scope(f"sk-{uuid.uuid4().hex}", "http://127.0.0.1:1/api/v1")
    a, b = Breaker(3, 5.0, scope), Breaker(3, 5.0, scope)
    other = Breaker(3, 5.0, breaker_scope("sk-another-account", "http://127.0.0.1:1/api/v1"))
    for breaker in (a, b, other):
        breaker.use_redis(client)
    a.failure("503 one")
    b.failure("503 two")
    a.check("J")  # still closed: 2 of 3
    b.failure("503 three")
    with pytest.raises(DescriberUnavailable, match=r"DashScope unavailable since .*framescribe retry J"):
        a.check("J")  # opened by another worker's failures
    other.check("J")  # another account's breaker (or another endpoint's) stays closed
    b.success()
    a.success()
    a.check("J")


def test_each_account_and_endpoint_has_its_own_breaker(tmp_path: Path) -> None:
    """An outage is shared by the workers of one account on one endpoint (a region), not by every DashScope
    user of the Redis: two deployments (or two regions) on one Redis do not stop each other's jobs."""

    def breaker(key: str, base_url: str) -> Breaker:
        ds = {"api_key": key, "base_url": base_url, "breaker_failures": 3, "breaker_cooldown_s": 5}
        return build(load_settings(data_dir=tmp_path, describer={"kind": "dashscope"}, dashscope=ds)).breaker

    beijing, singapore = "https://dashscope.aliyuncs.com/api/v1", "https://dashscope-intl.aliyuncs.com/api/v1"
    assert breaker("sk-a", beijing) is breaker("sk-a", beijing)  # one per process, shared by its jobs
    keys = {breaker(k, url).key for k in ("sk-a", "sk-b") for url in (beijing, singapore)}
    assert len(keys) == 4 and not any("sk-" in k for k in keys)  # the key itself never reaches Redis


@pytest.mark.parametrize(("cap", "model_summary"), [(3, False), (4, True)])
def test_the_summary_counts_against_max_calls(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, cap: int, model_summary: bool
) -> None:
    ports, job_id, summary = run(make_settings(tmp_path, fake), clip_12s, max_calls=cap)
    assert summary.segments_done == 3 and fake.billed_totals()["calls"] <= cap
    assert (summary.source == "dashscope") is model_summary
    assert summary.calls == (4 if model_summary else 3)
    usage = assert_stored_equals_billed(ports, job_id, fake)
    # the summary's usage is in the exports and the API's usage, with the cost
    from worker.bootstrap import export_input
    from worker.spend import usage_with_cost

    head = export_input(ports.store, job_id).job
    assert head["usage"] == usage and head["summary"]["usage"]["summary"].get("calls", 0) == int(model_summary)
    api = usage_with_cost(usage, ports.store.get_job(job_id).options, ports.settings)
    assert api["cost"] is not None and api["cost"] > 0 and api["currency"] == "CNY"
    assert head["summary"]["usage"]["cost"]["amount"] == pytest.approx(api["cost"])


@pytest.mark.parametrize("segmenter", ["fixed", "scene", "hybrid"])
def test_dry_run_runs_the_analysis_pass_and_prints_cost(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, segmenter: str
) -> None:
    import io

    from rich.console import Console

    from worker import cli_estimate

    settings = make_settings(tmp_path, fake)
    opts = JobOptions(segmenter=segmenter)  # type: ignore[arg-type]
    data = cli_estimate.report(clip_12s, opts, settings)
    est = data["estimate"]
    assert est["segmentation"] == ("fixed" if segmenter == "fixed" else "analysed")
    assert est["summary_calls"] == 1 and est["cost"]["amount"] > 0 and est["cost"]["currency"] == "CNY"
    # the job then plans exactly the segments and video tokens the dry run said
    ports, job_id, _ = run(settings, clip_12s, segmenter=segmenter)
    assert len(rows(ports, job_id)) == est["segments"]
    assert fake.billed_totals()["video_tokens"] == est["video_tokens"]
    assert fake.billed_totals()["calls"] == est["calls"] + est["summary_calls"]
    terminal = Console(file=io.StringIO(), force_terminal=True, width=100)
    cli_estimate.show(data, terminal, as_json=False)
    text = terminal.file.getvalue()  # type: ignore[attr-defined]
    assert "cost (at most)" in text and "video tokens" in text and "{" not in text
    piped = Console(file=io.StringIO(), width=100)
    cli_estimate.show(data, piped, as_json=True)
    assert json.loads(piped.file.getvalue())["estimate"]["segments"] == est["segments"]  # type: ignore[attr-defined]


def test_the_dry_run_builds_no_store_and_no_describer(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dry run needs a reader and the analyser only: no database is opened or created, no request."""
    import worker.bootstrap
    from worker import cli_estimate

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the dry run built a store or a describer")

    monkeypatch.setattr(worker.bootstrap, "store_for", refuse)
    monkeypatch.setattr(worker.bootstrap, "build_describer", refuse)
    settings = make_settings(tmp_path, fake)
    data = cli_estimate.report(clip_12s, JobOptions(segmenter="scene"), settings)  # type: ignore[arg-type]
    assert data["estimate"]["segments"] >= 1 and data["estimate"]["segmentation"] == "analysed"
    assert not list(tmp_path.rglob("*.db")) and fake.requests == []


def test_an_sdk_failure_is_one_log_line_not_a_traceback(
    tmp_path: Path, fake: FakeDashScope, clip_12s: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, fake)
    req = request_for(tmp_path, settings, clip_12s)
    fake.enqueue(Behavior(reset=True))
    with caplog.at_level("DEBUG"):
        build(settings).describe(req)
    assert not [r for r in caplog.records if r.exc_info]  # the SDK's "Request failed" traceback is dropped
    retries = [r for r in caplog.records if "attempt 2 of" in r.getMessage()]
    assert len(retries) == 1 and "DashScope unreachable" in retries[0].getMessage()
