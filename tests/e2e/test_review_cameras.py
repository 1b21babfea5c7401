"""The review page's camera list and a camera's live timeline (alerts highlighted), in Debian's chromium,
over a stream watched from the real RTSP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.main import create_app
from tests.integration.api_fixtures import serve
from tests.integration.live_fixtures import camera_name, live_settings, start_watch
from tests.integration.test_live_streams_api import StreamStarts
from tests.live_servers import RtspServer, make_clip, needs_rtsp

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [needs_rtsp, pytest.mark.browser, pytest.mark.services]


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (scripts/bootstrap installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def test_camera_list_and_live_timeline(tmp_path: Path, browser: object) -> None:
    server = RtspServer(make_clip(tmp_path / "clip.mp4"), tmp_path / "rtsp.log")
    server.start()
    settings = live_settings(tmp_path, mqtt_url=None)
    camera = camera_name()
    try:
        # 10 s of 2 s segments: at least two alerts even when the RTSP session takes seconds to start
        run = start_watch(settings, server.url, camera, 10, alert=["keyword:scene"])
        counters = run.join(60)
    finally:
        server.stop()
    assert counters.alerts >= 2
    with serve(create_app(settings, enqueuer=StreamStarts(), mirror=None)) as base:  # type: ignore[arg-type]
        page = browser.new_page()  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base + "/#/cameras")
        page.get_by_role("link", name=camera, exact=True).click()
        page.wait_for_selector("ol.segments.live li.alert")
        assert page.locator("ol.segments.live li.alert").count() == counters.alerts
        assert "stopped" in page.locator("#cam-h + p").inner_text()
        page.get_by_role("link", name="full timeline").click()
        page.wait_for_url(f"**/#/jobs/{run.watcher.job_id}")
        assert errors == []
