"""Hostile browser, injection and leak cases against the real app on uvicorn (issue 14, items 6-16).

A page of another origin, a rebinding host name, an upload dressed as HTML, model text that forges
subtitle cues or spreadsheet formulas, huge numbers in queries, an existence oracle, signed URLs and
server paths in exports, forged source links, unbounded metrics labels and event streams.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import io
import json
import shutil
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
import srt
import webvtt

from tests.integration.api_fixtures import Api, client, error_of, running_api
from worker.core.models import Description, FrameRef, SegmentPlan, VideoInfo
from worker.errors import FramescribeError

pytestmark = pytest.mark.security

KEY = "web-test-key"


@pytest.fixture(scope="module")
def open_api(tmp_path_factory: pytest.TempPathFactory, clip_12s: Path) -> Iterator[Api]:
    """No keys: served to loopback only (the mode CSRF and rebinding target)."""
    with running_api(tmp_path_factory.mktemp("open"), security={"max_event_streams_per_client": 2}) as api:
        shutil.copy(clip_12s, api.media / "clip.mp4")
        yield api


@pytest.fixture(scope="module")
def keyed_api(tmp_path_factory: pytest.TempPathFactory, clip_12s: Path) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("keyed"), api_keys=[KEY]) as api:
        shutil.copy(clip_12s, api.media / "clip.mp4")
        yield api


def seed(api: Api, texts: list[str], *, source: str | None = None, model: str = "qwen", error: str = "") -> str:
    """A done job whose segments say ``texts`` (as a worker would have stored them)."""
    store = api.store()
    job, _ = store.create_job(source or str(api.media / "clip.mp4"), "clip.mp4", {})
    plans = [SegmentPlan(i, i * 1000, (i + 1) * 1000, Fraction(1), (i * 1000,)) for i in range(len(texts) + 1)]
    store.plan_job(job.id, VideoInfo(len(plans) * 1000, 25.0, 25 * len(plans), 320, 240, "avc1", 1), plans)
    for i, text in enumerate(texts):
        store.claim_segment(job.id, i)
        frame = FrameRef(0, i * 1000, str(api.settings.data_dir / f"{job.id}-{i}.jpg"), 320, 240, 10)
        store.save_segment(job.id, i, Description(text, {"title": text}, describer=model, model=model), [frame])
    store.claim_segment(job.id, len(texts))
    store.fail_segment(job.id, len(texts), error or "=cmd|' /C calc'!A0")
    store.set_job_state(job.id, "partial", error or None)
    return job.id


# -- 6. metrics labels -----------------------------------------------------------------------------
def test_metrics_labels_stay_bounded(open_api: Api) -> None:
    with client(open_api.base) as http:
        before = len(http.get("/metrics").text)
        for n in range(300):
            http.request(f"X{n:04d}", f"/v1/nowhere/{n}")
            http.request("GET", f"/v1/jobs/{n:032x}")
        text = http.get("/metrics").text
    assert "X0001" not in text and "/v1/nowhere" not in text and f"{5:032x}" not in text
    assert 'method="other"' in text and "/v1/jobs/{job_id}" in text
    assert len(text) < before + 20_000, "a few new series, not one per request"


# -- 7. event streams per client -------------------------------------------------------------------
def test_event_streams_are_capped_per_client(open_api: Api) -> None:
    store = open_api.store()
    job, _ = store.create_job(str(open_api.media / "clip.mp4"), "clip.mp4", {})  # queued: streams stay open
    url = f"{open_api.base}/v1/jobs/{job.id}/events"
    with client(open_api.base) as a, client(open_api.base) as b, client(open_api.base) as c:
        with a.stream("GET", url) as s1, b.stream("GET", url) as s2:
            assert s1.status_code == s2.status_code == 200
            third = c.get(url)
            assert third.status_code == 429 and error_of(third)["code"] == "too_many_streams"
        deadline = time.monotonic() + 10  # closed streams give their slot back
        while True:
            with c.stream("GET", url) as s3:
                if s3.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the slots of closed streams never came back"
            time.sleep(0.3)


# -- 8. the source link cannot serve HTML ---------------------------------------------------------
def test_upload_named_html_is_served_only_as_video(keyed_api: Api) -> None:
    data = (keyed_api.media / "clip.mp4").read_bytes()
    with client(keyed_api.base, KEY) as http:
        resp = http.post("/v1/jobs", files={"file": ("evil.html", data, "text/html")})
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        src = http.get(f"/v1/jobs/{job_id}/source")
    assert src.status_code == 200 and src.headers["content-type"] == "video/mp4"
    assert src.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in src.headers["content-security-policy"] and "default-src 'none'" in src.headers[
        "content-security-policy"]  # fmt: skip
    assert src.headers["content-disposition"].startswith("attachment;") and ".html" not in src.headers[
        "content-disposition"]  # fmt: skip
    stored = list((keyed_api.settings.data_dir / "uploads").glob("*/*"))
    assert stored and all(p.name == "source.video" for p in stored), "never the client's extension"


@pytest.mark.parametrize("name", ["page.html", "x.svg", "y.mp4"])
def test_path_source_type_comes_from_its_bytes(keyed_api: Api, name: str) -> None:
    target = keyed_api.media / f"typed-{name}"
    shutil.copy(keyed_api.media / "clip.mp4", target)
    job_id = seed(keyed_api, ["a"], source=str(target))
    with client(keyed_api.base, KEY) as http:
        ok = http.get(f"/v1/jobs/{job_id}/source")
        assert ok.status_code == 200 and ok.headers["content-type"] == "video/mp4"
        target.write_bytes(b"<html><script>alert(document.domain)</script></html>" + b" " * 64)
        swapped = http.get(f"/v1/jobs/{job_id}/source")
    assert swapped.status_code == 415 and "<script>" not in swapped.text


# -- 9. CSRF and DNS rebinding ---------------------------------------------------------------------
@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.nip.io", "attacker.localhost.example"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_foreign_host_names_are_refused(open_api: Api, host: str, method: str) -> None:
    with client(open_api.base) as http:
        resp = http.request(method, "/v1/jobs", headers={"Host": host}, json={"path": "x"})
    assert resp.status_code == 421 and error_of(resp)["code"] == "wrong_host"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://127.0.0.1:1"},  # another port is another origin
        {"Sec-Fetch-Site": "same-site"},  # another port or sub-domain of the same site
        {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:1"},
    ],
)
def test_cross_origin_writes_are_refused(open_api: Api, headers: dict[str, str]) -> None:
    before = len(open_api.enqueuer.jobs)
    with client(open_api.base) as http:
        submit = http.post("/v1/jobs", json={"path": str(open_api.media / "clip.mp4")}, headers=headers)
        form = http.post("/v1/jobs", content=b"path=x", headers={**headers, "Content-Type": "text/plain"})
    assert submit.status_code == form.status_code == 403 and error_of(submit)["code"] == "cross_origin"
    assert len(open_api.enqueuer.jobs) == before, "no job was queued"


def test_same_origin_and_loopback_names_still_work(open_api: Api) -> None:
    port = open_api.base.rsplit(":", 1)[1]
    with client(open_api.base) as http:
        same = http.post("/v1/jobs", json={"path": str(open_api.media / "clip.mp4"), "dry_run": True},
                         headers={"Origin": open_api.base})  # fmt: skip
        named = http.get("/v1/jobs", headers={"Host": f"localhost:{port}"})
    assert same.status_code == 200 and named.status_code == 200


FORM_BODIES = [  # what an HTML form can post cross-site without a CORS preflight
    ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--x--\r\n'),
    ("application/x-www-form-urlencoded", b"a=b"),
    ("text/plain", b"a=b"),
]


@pytest.mark.parametrize(("ctype", "body"), FORM_BODIES)
@pytest.mark.parametrize("action", ["submit", "cancel", "retry", "delete"])
def test_keyless_form_writes_need_a_same_origin_proof(open_api: Api, ctype: str, body: bytes, action: str) -> None:
    """An old browser sends neither Origin nor Sec-Fetch-Site on a form post: without keys, such a write
    is refused unless it proves where it comes from."""
    store = open_api.store()
    job, _ = store.create_job(str(open_api.media / "clip.mp4"), "clip.mp4", {})
    routes = {
        "submit": ("POST", "/v1/jobs"),
        "cancel": ("POST", f"/v1/jobs/{job.id}/cancel"),
        "retry": ("POST", f"/v1/jobs/{job.id}/retry"),
        "delete": ("DELETE", f"/v1/jobs/{job.id}"),
    }
    method, path = routes[action]
    before = len(open_api.enqueuer.jobs)
    with client(open_api.base) as http:
        resp = http.request(method, path, content=body, headers={"Content-Type": ctype})
    assert resp.status_code == 403 and error_of(resp)["code"] == "origin_unproven"
    assert "X-Framescribe-Client" in error_of(resp)["message"], "the refusal says how scripts get through"
    assert store.get_job(job.id).state == "queued" and len(open_api.enqueuer.jobs) == before


@pytest.mark.parametrize(
    "proof",
    [{"Sec-Fetch-Site": "same-origin"}, {"X-Framescribe-Client": "curl"}, {"Sec-Fetch-Site": "none"}, "origin"],
)
def test_keyless_uploads_with_a_proof_are_served(open_api: Api, proof: dict[str, str] | str) -> None:
    headers = {"Origin": open_api.base} if proof == "origin" else dict(proof)  # type: ignore[arg-type]
    data = (open_api.media / "clip.mp4").read_bytes()
    with client(open_api.base) as http:
        resp = http.post("/v1/jobs", files={"file": ("c.mp4", data)}, data={"options": '{"dry_run": true}'},
                         headers=headers)  # fmt: skip
    assert resp.status_code == 200, resp.text


def test_keyless_scripts_without_browser_headers_still_work(open_api: Api) -> None:
    """curl/httpx on loopback: JSON and bodiless writes need no key and no extra header (a browser can
    send neither cross-origin without a preflight or an Origin header)."""
    store = open_api.store()
    job, _ = store.create_job(str(open_api.media / "clip.mp4"), "clip.mp4", {})
    with client(open_api.base) as http:
        submit = http.post("/v1/jobs", json={"path": str(open_api.media / "clip.mp4"), "dry_run": True})
        cancel = http.post(f"/v1/jobs/{job.id}/cancel")
    assert submit.status_code == 200 and cancel.status_code == 200
    assert store.get_job(job.id).state == "cancelled"


def test_keyed_form_writes_need_only_the_key(keyed_api: Api) -> None:
    """With keys the Authorization header is the proof: no page can add it cross-origin."""
    data = (keyed_api.media / "clip.mp4").read_bytes()
    with client(keyed_api.base, KEY) as http:
        resp = http.post("/v1/jobs", files={"file": ("c.mp4", data)}, data={"options": '{"dry_run": true}'})
    assert resp.status_code == 200, resp.text


# -- 10. subtitle injection ------------------------------------------------------------------------
PAYLOADS = [
    "Calm.\n\n2\n00:00:00,000 --> 00:00:09,000\nFORGED CUE",
    "Calm.\r\n\r\n99\r\n00:00:01.000 --> 00:00:02.000\r\nFORGED CUE",
    "<script>alert(1)</script> <font color=red>red</font> <b>bold</b>",
    "{\\an8}moved to the top {\\pos(1,1)}",
    "Calm.\u2028\u2029NOTE not a note\x0bvertical\x0cfeed\x00nul",
    "A --> B --&gt; C -- > D",
]


@pytest.mark.parametrize("fmt", ["srt", "vtt", "chapters"])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_subtitle_text_cannot_forge_cues_or_markup(keyed_api: Api, tmp_path: Path, fmt: str, payload: str) -> None:
    job_id = seed(keyed_api, [payload, "Second segment."])
    with client(keyed_api.base, KEY) as http:
        resp = http.get(f"/v1/jobs/{job_id}/export", params={"format": fmt})
    assert resp.status_code == 200
    body = resp.text
    assert body.count("-->") == 2, "exactly one timing line per cue"
    assert "<script" not in body and "<font" not in body and "<b>" not in body
    assert "\x00" not in body and "\x0b" not in body
    if fmt == "srt":
        subs = list(srt.parse(body))
        assert [s.index for s in subs] == [1, 2] and "{\\" not in body
    else:
        out = tmp_path / "x.vtt"
        out.write_text(body)
        assert len(webvtt.read(str(out))) == 2


# -- 11. CSV formulas in every text cell -----------------------------------------------------------
FORMULAS = ["=1+1", "＝1+1", " =1+1", "\t=1+1", "@SUM(A1)", "+1+1", "-1+1", "\u3000=1", "\n=1", "＋1", "＠x"]


@pytest.mark.parametrize("formula", FORMULAS)
def test_csv_defuses_every_text_cell(keyed_api: Api, formula: str) -> None:
    job_id = seed(keyed_api, [formula + " desc"], model=formula + " model", error=formula + " err")
    with client(keyed_api.base, KEY) as http:
        resp = http.get(f"/v1/jobs/{job_id}/export", params={"format": "csv"})
    rows = list(csv.reader(io.StringIO(resp.text)))
    cells = [c for row in rows[1:] for c in row]
    assert any(formula.strip() in c for c in cells)
    for cell in cells:
        assert not cell.lstrip(" \t\u3000\r\n").startswith(("=", "+", "@", "＝", "＋", "＠")) or cell.startswith("'")
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r", "\n", " =", "＝", "＋", "＠")), repr(cell)


# -- 12. TOCTOU: the worker checks where it opens ----------------------------------------------------
def test_symlink_swapped_in_after_submit_is_not_followed(keyed_api: Api, tmp_path: Path) -> None:
    from worker.bootstrap import build_ports
    from worker.service import pipeline

    clip = keyed_api.media / "swap.mp4"
    shutil.copy(keyed_api.media / "clip.mp4", clip)
    with client(keyed_api.base, KEY) as http:
        resp = http.post("/v1/jobs", json={"path": str(clip)})
    assert resp.status_code == 202
    secret = tmp_path / "secret.mp4"
    shutil.copy(clip, secret)
    clip.unlink()
    clip.symlink_to(secret)  # after the submit check, before the worker opens it
    job_id = resp.json()["id"]
    with contextlib.suppress(FramescribeError):  # the job fails with its reason; how it surfaces is the runner's
        pipeline.run_inline(build_ports(keyed_api.settings, check_sources=True), job_id)
    job = keyed_api.store().get_job(job_id)
    assert job.state == "failed" and "outside the allowed folders" in (job.error or "")


# -- 13. numeric query bounds ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value", ["1e16", "1e308", "1e400", "inf", "nan", "-1", "99999999999999999999", "99999999999999:00:00"]
)
@pytest.mark.parametrize("param", ["from", "to"])
def test_search_time_bounds(keyed_api: Api, value: str, param: str) -> None:
    with client(keyed_api.base, KEY) as http:
        resp = http.get("/v1/search", params={"q": "car", param: value})
    assert resp.status_code == 422, resp.text
    assert error_of(resp)["field"] == param


# -- 14. no existence oracle outside the roots ------------------------------------------------------
@pytest.mark.parametrize(
    ("exists", "missing"), [("/etc/passwd", "/etc/no-such-file-here"), ("/", "/nonexistent-dir/x")]
)
def test_outside_paths_get_one_message(keyed_api: Api, exists: str, missing: str) -> None:
    with client(keyed_api.base, KEY) as http:
        a = error_of(http.post("/v1/jobs", json={"path": exists}))
        b = error_of(http.post("/v1/jobs", json={"path": missing}))
    assert a["message"].replace(exists, "P") == b["message"].replace(missing, "P") and a["code"] == b["code"]


# -- 15. no secrets or server paths in exports -----------------------------------------------------
@pytest.mark.parametrize("fmt", ["json", "otio", "md", "csv", "edl"])
def test_exports_carry_no_url_secrets_or_server_paths(keyed_api: Api, fmt: str) -> None:
    url_job = seed(keyed_api, ["a"], source="https://cdn.example/v.mp4?X-Amz-Signature=SECRET&token=SECRET#frag",
                   error="downloading https://user:SECRET@cdn.example/v.mp4?sig=SECRET failed")  # fmt: skip
    path_job = seed(keyed_api, ["b"])
    with client(keyed_api.base, KEY) as http:
        for job_id in (url_job, path_job):
            text = http.get(f"/v1/jobs/{job_id}/export", params={"format": fmt}).text
            assert "SECRET" not in text and str(keyed_api.media) not in text
            assert str(keyed_api.settings.data_dir) not in text


# -- 16. source-link secret and empty keys -----------------------------------------------------------
def test_source_links_are_not_signed_with_the_api_key(keyed_api: Api) -> None:
    job_id = seed(keyed_api, ["a"])
    exp = int(time.time()) + 3600
    old = hashlib.sha256(("framescribe-source-url\x00" + KEY).encode()).digest()
    forged = hmac.new(old, f"{job_id}:{exp}".encode(), hashlib.sha256).hexdigest()
    with client(keyed_api.base) as anon, client(keyed_api.base, KEY) as http:
        assert anon.get(f"/v1/jobs/{job_id}/source", params={"exp": exp, "sig": forged}).status_code == 401
        link = http.get(f"/v1/jobs/{job_id}/source-url").json()["url"]
        assert anon.get(link).status_code == 200, "the real link works without a key"


@pytest.mark.parametrize("keys", ['[""]', '["  "]', '["ok", ""]', '["sha256:"]'])
def test_empty_api_keys_are_refused_by_the_cli(tmp_path: Path, keys: str) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "FRAMESCRIBE_API_KEYS": keys, "FRAMESCRIBE_DATA_DIR": str(tmp_path)}
    cli = str(Path(sys.executable).parent / "framescribe")
    res = subprocess.run([cli, "scheduler", "--host", "0.0.0.0", "--port", "1"],
                         env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "empty" in res.stderr, res.stderr[-500:]


def test_json_exports_link_frames_instead_of_paths(keyed_api: Api) -> None:
    job_id = seed(keyed_api, ["a"])
    with client(keyed_api.base, KEY) as http:
        data = json.loads(http.get(f"/v1/jobs/{job_id}/export", params={"format": "json"}).text)
    frames = data["segments"][0]["frames"]
    assert frames and all("path" not in f and f["url"].startswith(f"/v1/jobs/{job_id}/frames/") for f in frames)
    assert data["source"] == "clip.mp4"
