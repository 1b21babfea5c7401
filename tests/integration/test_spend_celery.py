"""The caps across Celery workers (issue 15): reservations in the result store are shared by every
worker process, so a cap holds whatever the number of workers — the fake's bill never passes it.

Two real workers with two processes each (four segments in flight) against the loopback fake, whose
first replies are lost after it processed (and billed) them, so the retries need more than the estimate
the plan was admitted with: the job meets its cap during the run. Requests are counted at the fake.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dashscope
import pytest

from tests.conftest import ffmpeg_video
from tests.fakes.dashscope_server import Behavior, FakeDashScope
from tests.integration.fault_fixtures import assert_job_clean, dashscope_env, fault_cluster, submit
from worker.config import load_settings
from worker.options import JobOptions

KEY = "sk-celery-caps"
OPTS = {"segment_seconds": 2, "fps": 2, "describer": "dashscope"}


@pytest.fixture
def fake() -> Iterator[FakeDashScope]:
    old = dashscope.base_http_api_url
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    with FakeDashScope() as server:
        yield server
    dashscope.base_http_api_url = old


def _estimate(tmp: Path, clip: Path, fake: FakeDashScope) -> dict[str, int]:
    from worker import cli_estimate

    ds = {"api_key": KEY, "base_url": fake.base_http_api_url}
    settings = load_settings(data_dir=tmp / "est", describer={"kind": "dashscope"}, dashscope=ds)
    est: dict[str, int] = cli_estimate.report(clip, JobOptions.parse(OPTS), settings)["estimate"]
    return est


@pytest.mark.parametrize(("cap", "lost"), [("max_calls", 3), ("max_video_tokens", 2)])
def test_a_cap_holds_across_workers_with_lost_replies(tmp_path: Path, fake: FakeDashScope, cap: str, lost: int) -> None:
    clip = ffmpeg_video(tmp_path / "clip12.mp4", seconds=12)  # 6 segments of 2 s
    est = _estimate(tmp_path, clip, fake)
    assert est["segments"] == 6
    value = est["calls"] if cap == "max_calls" else est["video_tokens"]  # the estimate: admitted
    env = dashscope_env(fake, KEY, timeout_s=30, max_attempts=6, backoff_base_s=0.05, backoff_max_s=0.2)
    with fault_cluster(tmp_path / "cluster", workers=2, concurrency=2, env=env) as c:
        fake.enqueue(*[Behavior(reset_after=True) for _ in range(lost)])  # billed, the reply never arrives
        fake.hold()  # the first requests wait at the gate together: several processes in flight at once
        job_id = submit(c, clip, describer="dashscope", **{cap: value})
        together = fake.wait_for_held(4, timeout=6)
        held = fake.held_count
        fake.release()
        job = c.wait(job_id, timeout=120)
        assert_job_clean(c, job_id, ("partial",))
        bill, sent = fake.billed_totals(), len(fake.requests_of("generation"))
        usage = c.store.usage(job_id)
        print(f"cap {cap}={value}: {held} request(s) in flight together ({together}); billed {bill}; sent {sent}")
        if cap == "max_calls":
            assert sent <= value and bill["calls"] <= value  # every request the fake saw, lost replies included
            assert (job.summary or {}).get("source") != "dashscope"  # no call left for a model summary
        else:
            assert bill["video_tokens"] <= value
            # the summary (a text model: no video tokens) still runs, and its request is counted
            assert int(((job.summary or {}).get("usage") or {}).get("summary", {}).get("http_attempts", 0)) >= 1
        # stored = billed: every request (segments, retries, the summary) and every token
        assert usage["http_attempts"] == sent == bill["calls"]
        assert usage["video_tokens"] == bill["video_tokens"] and usage["input_tokens"] == bill["input_tokens"]
        assert usage["output_tokens"] <= bill["output_tokens"]  # a lost reply's output cannot be known
        failed = [c.store.segment(job_id, i) for i, state, _ in c.rows(job_id) if state == "failed"]
        reason = "call cap" if cap == "max_calls" else "video token cap"
        assert failed and any(reason in (r.error or "") for r in failed), [r.error for r in failed]
