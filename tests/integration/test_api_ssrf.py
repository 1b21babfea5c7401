"""SSRF rules through the real app: source URLs, webhook URLs and schedule URLs that point inside the
network are refused with 422 and a canary server on 127.0.0.1 sees no request at all.

Allow-list: only ``127.0.0.2`` (a second loopback address) is allowed; a file server there is the
positive control, and a redirector there bounces to the canary (refused at the hop).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.api_fixtures import (
    Api,
    LoopbackServer,
    canary,
    error_of,
    file_server,
    redirector,
    running_api,
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("ssrf"), scheduler={"allow_private_urls": ["127.0.0.2"]}) as a:
        yield a


@pytest.fixture(scope="module")
def trap() -> Iterator[LoopbackServer]:
    with canary() as c:
        yield c


def bad_urls(port: int, bounce: str) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/v.mp4",
        f"http://localhost:{port}/v.mp4",
        f"http://localhost.:{port}/v.mp4",
        f"http://[::1]:{port}/v.mp4",
        f"http://[::ffff:127.0.0.1]:{port}/v.mp4",
        f"http://2130706433:{port}/v.mp4",
        f"http://0x7f.1:{port}/v.mp4",
        f"http://017700000001:{port}/v.mp4",
        f"http://127.1:{port}/v.mp4",
        f"http://0.0.0.0:{port}/v.mp4",
        "http://10.0.0.1/v.mp4",
        "http://192.168.1.1/v.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[fd00::1]/v.mp4",
        "http://224.0.0.1/v.mp4",
        f"file://127.0.0.1:{port}/etc/passwd",
        "file:///etc/passwd",
        f"ftp://127.0.0.1:{port}/v.mp4",
        f"gopher://127.0.0.1:{port}/_x",
        "data:video/mp4;base64,AAAA",
        f"http://user:pass@127.0.0.2:{port}/v.mp4",
        bounce,
    ]


def test_source_urls_into_the_network_are_refused(api: Api, trap: LoopbackServer) -> None:
    with redirector(trap.url("/v.mp4"), host="127.0.0.2") as bounce, api.http() as http:
        for url in bad_urls(trap.port, bounce.url("/v.mp4")):
            for dry in (False, True):
                resp = http.post("/v1/jobs", json={"url": url, "dry_run": dry})
                assert resp.status_code == 422, (url, resp.text)
                assert error_of(resp)["field"] == "url", url
        assert len(bounce.hits) == 2  # the allowed first hop was fetched; its redirect was not followed
    assert trap.hits == []
    assert api.enqueuer.jobs == []


def test_webhook_and_schedule_urls_follow_the_same_rules(api: Api, trap: LoopbackServer, clip_12s: Path) -> None:
    with file_server(clip_12s, host="127.0.0.2") as files, api.http() as http:
        good = files.url("/clip.mp4")
        for url in bad_urls(trap.port, trap.url("/")):
            resp = http.post("/v1/jobs", json={"url": good, "webhook_url": url})
            assert resp.status_code == 422 and error_of(resp)["field"] == "webhook_url", (url, resp.text)
            sched = http.post("/v1/schedules", json={"name": "s", "interval_s": 60, "source": {"url": url}})
            assert sched.status_code == 422 and error_of(sched)["field"] == "source.url", (url, sched.text)
            hooked = http.post(
                "/v1/schedules", json={"name": "s", "interval_s": 60, "source": {"url": good}, "webhook_url": url}
            )
            assert hooked.status_code == 422 and error_of(hooked)["field"] == "webhook_url", url
    assert trap.hits == []
    assert api.enqueuer.jobs == []


def test_allowed_url_is_accepted_and_sniffed(api: Api, clip_12s: Path, tmp_path: Path) -> None:
    """The positive control: the same checks let an allowed host through (dry run downloads and probes)."""
    text = tmp_path / "page.mp4"
    text.write_text("<html>not a video</html>")
    with (
        file_server(clip_12s, host="127.0.0.2") as files,
        file_server(text, host="127.0.0.2") as page,
        api.http() as http,
    ):
        dry = http.post("/v1/jobs", json={"url": files.url("/clip.mp4"), "dry_run": True, "segment_seconds": 4})
        real = http.post("/v1/jobs", json={"url": files.url("/clip.mp4")})
        html = http.post("/v1/jobs", json={"url": page.url("/page.mp4")})
    assert dry.status_code == 200, dry.text
    assert dry.json()["video"]["duration_ms"] == 12_000 and dry.json()["estimate"]["segments"] == 3
    assert real.status_code == 202 and real.json()["source_kind"] == "url"
    assert real.json()["id"] in api.enqueuer.jobs
    assert html.status_code == 422 and error_of(html)["code"] == "not_a_video"
    assert list((api.settings.data_dir).glob(".dryrun-*")) == []  # the dry run's download is gone
