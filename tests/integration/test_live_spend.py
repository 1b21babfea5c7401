"""Live cameras pay as jobs do (issue 15): frames are encoded at the job's frame budget by the ports' frame
writer, so the describer's estimate, the request and DashScope's bill agree by construction.

An ffmpeg HLS camera (320x240) described through the real ``dashscope`` SDK by the loopback fake, which
bills frames at their real size (``video_max_pixels = "ignore"``): had the watcher written them at
``sampling.max_pixels`` (its own writer, as before), the bill would be about 4x the estimate.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import dashscope
import pytest

from tests.fakes.dashscope_server import FakeDashScope
from tests.integration.live_fixtures import camera_name, start_watch
from tests.live_servers import HlsServer, make_clip
from worker.bootstrap import build_ports
from worker.config import load_settings
from worker.core import budget

pytestmark = pytest.mark.services
KEY = "sk-live-spend"
MAX_PIXELS = 16 * 32 * 32  # 128x128: the 320x240 camera must be shrunk to about 147x110 -> 128x96


@pytest.fixture
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


def test_live_frames_are_written_at_the_job_budget_and_billed_as_estimated(tmp_path: Path, fake: FakeDashScope) -> None:
    fake.video_max_pixels = "ignore"
    clip = make_clip(tmp_path / "motion.mp4", seconds=4, motion=True)
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'live.db'}",
        describer={"kind": "dashscope", "concurrency": 1},
        dashscope={"api_key": KEY, "base_url": fake.base_http_api_url, "max_pixels": MAX_PIXELS,
                   "backoff_base_s": 0.01, "backoff_max_s": 0.05},
        live={"allow_cameras": ["127.0.0.1"], "open_timeout_s": 5, "read_timeout_s": 2,
              "backoff_initial_s": 0.3, "backoff_max_s": 2},
    )  # fmt: skip
    hls = HlsServer(clip, tmp_path / "hls")
    hls.start()
    try:
        run = start_watch(settings, hls.url, camera_name(), 7)
        counters = run.join(60)
    finally:
        hls.stop()
    assert counters.described >= 1
    store = build_ports(settings).store
    job_id = run.watcher.job_id

    limits = dataclasses.replace(budget.limits_for(settings.dashscope.model), video_max_pixels=MAX_PIXELS)
    estimated = 0
    for row in store.segment_rows(job_id):
        if row.state != "done":
            continue
        frames = store.frames(job_id, row.index)
        assert frames and all(f.width * f.height <= MAX_PIXELS for f in frames)
        assert all(f.width % limits.factor == 0 and f.height % limits.factor == 0 for f in frames)
        estimated += budget.video_tokens(len(frames), frames[0].width, frames[0].height, limits)
    bill = fake.billed_totals()
    assert bill["video_tokens"] == estimated == store.usage(job_id)["video_tokens"]
