"""The review page in a real headless Chromium, against the real service: uvicorn on 127.0.0.1, Redis (DB 7)
and a real ``celery worker`` process. Submit the example clip, follow it to done, look at the segments,
search, download the subtitles. Screenshots go to test-artifacts/ (and one to docs/review-page.png).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
import webvtt

from scheduler.main import create_app
from tests.integration.celery_fixtures import cluster, wait_for
from worker.adapters.stores.sql import SqlResultStore

pytestmark = [pytest.mark.browser, pytest.mark.services]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "street.mp4"
ARTIFACTS = REPO / "test-artifacts"
DOCS_SHOT = REPO / "docs" / "review-page.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
BROKER = "redis://127.0.0.1:6379/7"  # this file's Redis DB
KEY = "review-page-test-key"
# Functions, not expressions: the page's CSP forbids eval, and Playwright would eval an expression.
ALL_LOADED = """([sel, n]) => {
  const imgs = [...document.querySelectorAll(sel)];
  return imgs.length === n && imgs.every((i) => i.complete && i.naturalWidth > 0);
}"""


@dataclass
class Service:
    url: str
    store: SqlResultStore


def _serve(app: object) -> tuple[uvicorn.Server, threading.Thread, int]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, name="uvicorn-review", daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "uvicorn to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, int(port)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API with keys on and examples/ allowed, over a SQLite store shared with one real worker."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (scripts/bootstrap installs it)")
    if not EXAMPLE.exists():
        pytest.skip("examples/street.mp4 is missing: run scripts/make_example.py")
    tmp = tmp_path_factory.mktemp("review")
    with cluster(tmp, f"sqlite:///{tmp / 'data' / 'framescribe.db'}", broker_url=BROKER, workers=1) as c:
        settings = c.settings.model_copy(update={"allowed_roots": [EXAMPLE.parent], "api_keys": [KEY]})
        server, thread, port = _serve(create_app(settings))
        try:
            yield Service(f"http://127.0.0.1:{port}", c.store)
        finally:
            server.should_exit = True
            thread.join(15)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def shot(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


def test_submit_follow_review_search_and_download(service: Service, browser: object) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # The API key goes into localStorage and is sent as Bearer from then on.
    page.goto(service.url + "/")
    page.fill("#api-key", KEY)
    page.click("#key-form button")
    page.wait_for_selector("text=API key saved")

    # Submit: the dry-run estimate comes first, then the job.
    page.click("#nav-submit")
    page.fill("input[name=path]", str(EXAMPLE))
    page.fill("input[name=fps]", "1")
    page.fill("input[name=segment_seconds]", "10")
    assert page.is_disabled("#submit-btn"), "no submit before an estimate"
    page.click("#estimate-btn")
    page.wait_for_selector("#estimate dl")
    estimate = page.inner_text("#estimate")
    assert re.search(r"Segments\s+2\b", estimate) and "00:20" in estimate, estimate
    shot(page, "01-submit-estimate.png")
    page.click("#submit-btn")
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
    job_id = page.url.rsplit("/", 1)[1]

    # Live progress from the SSE stream until the job is done.
    page.wait_for_selector(".progress-label >> text=2 of 2 segments finished (done)", timeout=120_000)
    assert page.inner_text("[data-role=state]") == "done"
    page.wait_for_function(ALL_LOADED, arg=[".seg .thumbs img", 12])
    cards = page.locator("li.seg")
    assert cards.count() == 2
    assert [cards.nth(i).locator(".times").inner_text() for i in range(2)] == ["00:00–00:10", "00:10–00:20"]
    stored = [r.description for r in service.store.segment_rows(job_id)]
    assert [cards.nth(i).locator("p.desc").inner_text() for i in range(2)] == stored
    alts = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.alt)")
    assert alts and all(a.strip() for a in alts), "every image has alt text"
    unlabeled = page.evaluate(
        "() => [...document.querySelectorAll('input, select')].filter(e => e.type !== 'hidden' && !e.labels.length"
        " && !e.getAttribute('aria-label')).map(e => e.name || e.id)"
    )
    assert unlabeled == [], f"inputs without a label: {unlabeled}"
    page.wait_for_function("() => document.querySelector('.player video').readyState >= 1")
    assert abs(page.eval_on_selector(".player video", "v => v.duration") - 20) < 0.5, "the source plays"
    shot(page, "02-job-page.png")
    _docs_screenshot(page)

    # Keyboard: the timeline is a row of buttons; arrows move between segments and seek the player.
    page.focus(".timeline .tl[data-index='0']")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.activeElement.dataset.index") == "1"
    assert page.get_attribute("#seg-1", "class") == "seg active"
    assert page.eval_on_selector(".player video", "v => v.currentTime") == pytest.approx(10, abs=0.5)

    # Clicking a segment shows all its frames; Escape closes the dialog.
    page.click("#seg-0 button.open")
    page.wait_for_function(ALL_LOADED, arg=[".frames-grid img", 10])
    shot(page, "03-frames.png")
    page.keyboard.press("Escape")
    assert not page.eval_on_selector("dialog", "d => d.open")

    # Search a word from a description and land on the hit.
    word = max(re.findall(r"[A-Za-z]{5,}", stored[1]), key=len)
    page.fill("#search-q", word)
    page.press("#search-q", "Enter")
    hit = page.locator(f"li.hit[data-job='{job_id}'][data-index='1']")
    hit.wait_for()
    assert word.lower() in [m.lower() for m in hit.locator("mark").all_inner_texts()]
    shot(page, "04-search.png")
    hit.locator("a").click()
    page.wait_for_selector("#seg-1.active")

    # Download the VTT through the exports menu and read its cues back.
    page.select_option(".exports select", "vtt")
    with page.expect_download() as info:
        page.click(".exports button[type=submit]")
    target = ARTIFACTS / "review-download.vtt"
    info.value.save_as(str(target))
    assert info.value.suggested_filename == f"street-{job_id[:8]}.vtt"
    cues = list(webvtt.read(str(target)))
    assert [(c.start, c.end) for c in cues] == [("00:00:00.000", "00:00:10.000"), ("00:00:10.000", "00:00:20.000")]
    assert [c.text for c in cues] == stored
    assert errors == [], f"JavaScript errors: {errors}"
    page.close()


def test_without_the_key_the_page_says_what_to_do(service: Service, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(service.url + "/")
    page.wait_for_selector("#status.error")
    assert "API key" in page.inner_text("#status")
    page.close()


def _docs_screenshot(page: object) -> None:
    """The README's picture of the job page (viewport only, < 300 KB): written when missing, or on request
    with FRAMESCRIBE_UPDATE_DOCS=1, so ordinary runs leave the committed file alone."""
    tmp = ARTIFACTS / "review-page-viewport.png"
    page.screenshot(path=str(tmp))  # type: ignore[attr-defined]
    size = tmp.stat().st_size
    assert size < 300_000, f"the job page screenshot is {size} bytes"
    if not DOCS_SHOT.exists() or os.environ.get("FRAMESCRIBE_UPDATE_DOCS"):
        DOCS_SHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp, DOCS_SHOT)
