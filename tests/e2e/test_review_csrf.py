"""CSRF in no-key loopback mode, in a real headless Chromium against the real app on uvicorn (issue 14,
item 9): a page of another origin (another port on 127.0.0.1: same site, other origin) cannot submit,
cancel or delete jobs by form post or fetch; the review page on the API's own origin still can.
"""

from __future__ import annotations

import http.server
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import test_review_page
from tests.e2e.test_review_page import CHROMIUM
from tests.integration.api_fixtures import Api, running_api
from tests.integration.celery_fixtures import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.security]

ATTACK = """<!doctype html><html><body>
<form id="cancel" method="POST" enctype="text/plain" action="{api}/v1/jobs/{job}/cancel">
  <input name="x" value="y"></form>
<form id="submit" method="POST" enctype="multipart/form-data" action="{api}/v1/jobs">
  <input name="options" value='{{"path": "{path}"}}'></form>
</body></html>"""


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, clip_12s: Path) -> Iterator[Api]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (scripts/bootstrap installs it)")
    with running_api(tmp_path_factory.mktemp("csrf")) as a:  # no keys: loopback clients only
        shutil.copy(clip_12s, a.media / "clip.mp4")
        yield a


browser = test_review_page.browser  # the module's headless Chromium fixture


def attacker_site(html: str) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A page on another port of 127.0.0.1 (same site as the API, another origin)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def test_pages_of_another_origin_cannot_write(api: Api, browser: object) -> None:
    store = api.store()
    job, _ = store.create_job(str(api.media / "clip.mp4"), "clip.mp4", {})
    queued = len(api.enqueuer.jobs)
    server, url = attacker_site(ATTACK.format(api=api.base, job=job.id, path=api.media / "clip.mp4"))
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        for form in ("cancel", "submit"):  # top-level form posts: the browser shows the API's answer
            page.goto(url)
            page.eval_on_selector(f"#{form}", "f => f.submit()")
            page.wait_for_url(re.compile(re.escape(api.base) + "/v1/jobs"))
            page.wait_for_selector("text=cross_origin")
        page.goto(url)
        statuses = page.evaluate(
            """async ([api, job]) => {
                const out = [];
                for (const [path, method, body] of [[`/v1/jobs/${job}/cancel`, "POST", "x"],
                                                    [`/v1/jobs/${job}`, "DELETE", null],
                                                    ["/v1/jobs", "POST", new FormData()]]) {
                  try {
                    const r = await fetch(api + path, {method, body, mode: "no-cors"});
                    out.push(r.type);
                  } catch (e) { out.push("blocked"); }
                }
                return out;
            }""",
            [api.base, job.id],
        )
        assert statuses[0] == "opaque" and statuses[2] == "opaque", statuses  # sent, answer unreadable
    finally:
        page.close()
        server.shutdown()
    assert store.get_job(job.id).state == "queued", "the job was neither cancelled nor deleted"
    assert len(api.enqueuer.jobs) == queued, "no job was submitted"


def test_the_review_page_submits_and_cancels_without_a_key(api: Api, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(api.base + "/#/submit")
        page.fill("input[name=path]", str(api.media / "clip.mp4"))
        page.fill("input[name=fps]", "1")
        page.fill("input[name=segment_seconds]", "6")
        page.click("#estimate-btn")
        page.wait_for_selector("#estimate dl")
        page.click("#submit-btn")
        page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
        job_id = page.url.rsplit("/", 1)[1]
        assert job_id in api.enqueuer.jobs
        page.wait_for_selector(".cancel-job:not([hidden])")
        page.click(".cancel-job")
        page.wait_for_selector("text=Job cancelled.")
        wait_for(lambda: api.store().get_job(job_id).state == "cancelled", 30, "the cancel to land")
    finally:
        page.close()
    assert errors == []
