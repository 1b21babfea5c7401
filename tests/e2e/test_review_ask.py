"""The review page's Ask box in a real headless Chromium, against the real app (uvicorn on 127.0.0.1) and the
loopback DashScope fake: ask on a job page, watch the answer stream in, click a citation, land on the segment."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from scheduler.main import create_app
from tests.fakes.dashscope_server import Behavior, FakeDashScope
from tests.integration.celery_fixtures import wait_for
from tests.integration.test_ask import _seed
from worker.adapters.stores.sql import SqlResultStore
from worker.config import load_settings
from worker.indexing import embedder_for, reindex

pytestmark = [pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
KEY = "review-ask-test-key"
ANSWER = "A white van parked near the entrance [00:10–00:20] while the driver unloaded boxes; it left [00:58]."


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, FakeDashScope]]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (scripts/bootstrap installs it)")
    with FakeDashScope() as fake:
        settings = load_settings(
            data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'fs.db'}", describer={"kind": "local"},
            api_keys=[KEY], dashscope={"api_key": "sk-test", "base_url": fake.base_http_api_url, "max_attempts": 1},
            ask={"embedder": "dashscope", "embed_dimension": 256, "look_again": False},
        )  # fmt: skip
        store = SqlResultStore(settings.resolved_database_url)
        job = _seed(store, tmp_path)
        store.set_job_state(job, "done")
        reindex(store, embedder_for(settings))  # type: ignore[arg-type]
        fake.default_behavior = Behavior(chunk_delay_s=0.15)
        fake.reply_fn = lambda rec: ANSWER
        server = uvicorn.Server(uvicorn.Config(create_app(settings, inline=True), host="127.0.0.1", port=0,
                                               log_level="warning", lifespan="on"))  # fmt: skip
        thread = threading.Thread(target=server.run, name="uvicorn-ask", daemon=True)
        thread.start()
        try:
            wait_for(lambda: server.started, 30, "uvicorn to start")
            port = server.servers[0].sockets[0].getsockname()[1]
            yield f"http://127.0.0.1:{port}", job, fake
        finally:
            server.should_exit = True
            thread.join(15)


def test_ask_box_streams_a_checked_answer_and_citations_land_on_segments(
    served: tuple[str, str, FakeDashScope],
) -> None:
    from playwright.sync_api import sync_playwright

    url, job, fake = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        page.fill("#api-key", KEY)
        page.click("#key-form button")
        page.goto(f"{url}/#/jobs/{job}")
        page.wait_for_selector("li.seg#seg-2")
        assert page.is_visible("#ask-scope"), "on a job page the question can be scoped to the job"

        page.fill("#ask-q", "when did a van park near the entrance?")
        with page.expect_request("**/v1/ask") as sent:
            page.press("#ask-q", "Enter")
        assert json.loads(sent.value.post_data or "{}") == {
            "question": "when did a van park near the entrance?",
            "stream": True,
            "job": job,
        }
        page.wait_for_function("() => document.getElementById('ask-panel').dataset.state === 'streaming'")
        partial = page.inner_text(".ask-answer")
        assert partial and ANSWER.startswith(partial.strip()) and len(partial.strip()) < len(ANSWER), partial
        page.wait_for_function("() => document.getElementById('ask-panel').dataset.state === 'done'", timeout=30_000)
        answer = page.inner_text(".ask-answer")
        assert "[00:10–00:20]" in answer and "[00:58]" not in answer, "the unsupported citation was removed"
        assert "Removed [00:58]" in page.inner_text(".ask-notes")
        assert "qwen-plus" in page.inner_text(".ask-byline")
        assert fake.text_generations()[-1].stream, "the model's reply was streamed through to the page"
        link = page.locator(".ask-answer a.cite")
        assert link.count() == 1 and link.inner_text() == "[00:10–00:20]"
        page.goto(url + "/#/")  # leave the job page, then follow the citation from the answer
        page.wait_for_selector("table.jobs tbody tr")
        link.click()
        page.wait_for_url(f"**/#/jobs/{job}?seg=1")
        page.wait_for_selector("#seg-1.active")
        assert page.evaluate("() => document.activeElement.id") == "seg-1"
        page.screenshot(path=str(Path("test-artifacts") / "ask-box.png"), full_page=True)
        assert errors == [], f"JavaScript errors: {errors}"
        browser.close()
