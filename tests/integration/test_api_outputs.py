"""The output endpoints through the real app: exports (streamed, named), search, the source video (Range)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
import srt
from fastapi.testclient import TestClient

from scheduler.main import create_app
from worker.adapters.stores.sql import SqlResultStore
from worker.config import Settings, load_settings
from worker.core.exports import FORMATS, renderer
from worker.core.models import Description, FrameRef, SegmentPlan, VideoInfo

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "street.mp4"
KEY = "test-key-outputs"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def app_settings(tmp_path: Path) -> Settings:
    """API keys on, the examples folder allowed, SQLite under tmp_path."""
    return load_settings(
        data_dir=tmp_path / "data",
        describer={"kind": "local"},
        allowed_roots=[str(EXAMPLE.parent)],
        api_keys=[KEY],
        read_only_api_keys=["reader"],
        security={"allowed_hosts": ["testserver"]},  # TestClient's Host header
    )


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings, inline=True)) as c:
        yield c


def seed(settings: Settings, source: str = str(EXAMPLE), name: str = "street café.mp4") -> str:
    """A done job of 2 segments (10 s each) with one frame each, as a worker would have stored it."""
    store = SqlResultStore(settings.resolved_database_url)
    job, _ = store.create_job(source, name, {"preset": "surveillance"})
    plans = [SegmentPlan(i, i * 10_000, (i + 1) * 10_000, Fraction(1), (i * 10_000,)) for i in range(2)]
    store.plan_job(job.id, VideoInfo(20_000, 15.0, 300, 640, 360, "avc1", 1), plans)
    texts = [("A red car parks at the kerb.", 1), ("A man in a grey coat climbs the fence.", 3)]
    for i, (text, threat) in enumerate(texts):
        store.claim_segment(job.id, i)
        frame = FrameRef(0, i * 10_000, str(settings.data_dir / f"f{i}.jpg"), 640, 352, 10)
        store.save_segment(job.id, i, Description(text, {"threat_level": threat, "title": f"part {i}"}), [frame])
    store.close()
    return job.id


def test_every_format_streams_with_its_type_and_file_name(client: TestClient, app_settings: Settings) -> None:
    job_id = seed(app_settings)
    renderer("json")
    for fmt, (_, media_type, ext) in FORMATS.items():
        res = client.get(f"/v1/jobs/{job_id}/export", params={"format": fmt}, headers=AUTH)
        assert res.status_code == 200, res.text
        assert res.headers["content-type"].split(";")[0] == media_type.split(";")[0]
        cd = res.headers["content-disposition"]
        assert f'filename="street_cafe-{job_id[:8]}.{ext}"' in cd, "ASCII fallback name"
        assert f"filename*=UTF-8''street%20caf%C3%A9-{job_id[:8]}.{ext}" in cd, "the real name, RFC 5987"
    subs = list(srt.parse(client.get(f"/v1/jobs/{job_id}/export?format=srt", headers=AUTH).text))
    assert [s.content for s in subs] == ["A red car parks at the kerb.", "A man in a grey coat climbs the fence."]
    edl = client.get(f"/v1/jobs/{job_id}/export", params={"format": "edl", "min_score": "0.9"}, headers=AUTH).text
    assert edl.count("* FROM CLIP NAME") == 1 and "segment 1 score 1.00" in edl


def test_export_errors_are_json_before_any_byte(client: TestClient, app_settings: Settings) -> None:
    job_id = seed(app_settings)
    bad = client.get(f"/v1/jobs/{job_id}/export", params={"format": "edl", "min_score": "lots"}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "min_score"
    unknown = client.get(f"/v1/jobs/{job_id}/export", params={"format": "docx"}, headers=AUTH)
    assert unknown.status_code == 422 and "choose one of" in unknown.json()["error"]["message"]
    missing = client.get(f"/v1/jobs/{'0' * 32}/export", headers=AUTH)
    assert missing.status_code == 404
    assert client.get(f"/v1/jobs/{job_id}/export").status_code == 401
    assert client.get(f"/v1/jobs/{job_id}/export", headers={"Authorization": "Bearer reader"}).status_code == 200


def test_search_endpoint(client: TestClient, app_settings: Settings) -> None:
    job_id = seed(app_settings)
    res = client.get("/v1/search", params={"q": "grey coat"}, headers=AUTH)
    assert res.status_code == 200, res.text
    (hit,) = res.json()["items"]
    assert (hit["job_id"], hit["index"], hit["start_ms"], hit["end_ms"]) == (job_id, 1, 10_000, 20_000)
    assert hit["thumbnail"] == f"/v1/jobs/{job_id}/frames/1/0.jpg"
    assert [hit["snippet"][a:b] for a, b in hit["marks"]] == ["grey", "coat"]
    ranged = client.get("/v1/search", params={"q": "car", "from": "00:10", "to": "20"}, headers=AUTH).json()
    assert ranged["items"] == [], "the red car is in 00:00–00:10"
    assert client.get("/v1/search", params={"q": "part", "job": job_id}, headers=AUTH).json()["items"]
    cases = (({"q": "?!"}, "q"), ({"q": "car", "from": "soon"}, "from"), ({"q": "x", "job": "nope"}, "job"))
    for params, field in cases:
        bad = client.get("/v1/search", params=params, headers=AUTH)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == field, bad.text
    assert client.get("/v1/search", params={"q": "car"}).status_code == 401


def test_source_plays_with_range_through_a_signed_link(client: TestClient, app_settings: Settings) -> None:
    job_id = seed(app_settings)
    link = client.get(f"/v1/jobs/{job_id}/source-url", headers=AUTH).json()
    assert link["media_type"] == "video/mp4" and "sig=" in link["url"]
    part = client.get(link["url"], headers={"Range": "bytes=0-99"})  # no Authorization: the <video> case
    assert part.status_code == 206 and part.content == EXAMPLE.read_bytes()[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{EXAMPLE.stat().st_size}"
    forged = link["url"][:-1] + ("0" if link["url"][-1] != "0" else "1")
    assert client.get(forged).status_code in (401, 422)
    assert client.get(f"/v1/jobs/{job_id}/source").status_code == 401
    assert client.get(f"/v1/jobs/{job_id}/source", headers=AUTH).content == EXAMPLE.read_bytes()


def test_sources_outside_the_roots_or_remote_are_not_served(client: TestClient, app_settings: Settings) -> None:
    outside = app_settings.data_dir.parent / "secret.mp4"
    outside.write_bytes(b"\x00" * 64)
    for source in (str(outside), "https://example.org/v.mp4", "/etc/passwd"):
        job_id = seed(app_settings, source=source)
        assert client.get(f"/v1/jobs/{job_id}/source-url", headers=AUTH).status_code == 404
        assert client.get(f"/v1/jobs/{job_id}/source", headers=AUTH).status_code == 404


def test_review_page_and_static_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<title>framescribe review</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"], "no CDN, no inline script"
    for name, kind in (("review.js", "text/javascript"), ("review.css", "text/css")):
        res = client.get(f"/static/{name}")
        assert res.status_code == 200 and res.headers["content-type"].startswith(kind)
    for bad in ("../routes.py", "..%2Froutes.py", "nope.js", "review.html"):
        assert client.get(f"/static/{bad}").status_code in (404, 422), bad
    for name in ("review.js", "review.css"):
        text = client.get(f"/static/{name}").text
        assert re.search(r"https?://|//cdn", text) is None, f"{name} loads nothing external"


def test_review_page_modules_are_served_as_javascript_under_the_csp(client: TestClient) -> None:
    """review.js and ask.js are ES modules: the page loads them with type=module, and every module they
    import (and those import) is served from /static as JavaScript, under the page's CSP, loading nothing external."""
    page = client.get("/").text
    entries = re.findall(r"<script ([^>]*)></script>", page)
    assert entries == ['type="module" src="/static/review.js"', 'type="module" src="/static/ask.js"'], entries
    seen: set[str] = set()
    todo = ["review.js", "ask.js"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        res = client.get(f"/static/{name}")
        assert res.status_code == 200, name
        assert res.headers["content-type"] == "text/javascript; charset=utf-8", name
        assert "script-src 'self'" in res.headers["content-security-policy"], name
        assert res.headers["x-content-type-options"] == "nosniff", name
        assert re.search(r"https?://|//cdn|\beval\(|new Function", res.text) is None, name
        todo += re.findall(r'^import [^;]* from "\./([a-z0-9_.-]+\.js)";$', res.text, re.M)
    assert {"api.js", "dom.js", "job.js", "events.js", "cameras.js"} <= seen, seen
