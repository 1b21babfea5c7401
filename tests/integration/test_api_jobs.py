"""``/v1/jobs`` through the real app with hostile and ordinary input: every refusal is a 4xx with the
error shape, nothing reaches the queue, nothing is a 500. No workers (a recording enqueuer).

Media: ``clip_12s`` (12 s, 320x240) copied into the allowed root ``media/``; uploads are capped at 8 MiB.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.api_fixtures import Api, client, error_of, running_api
from tests.media import audio_only, text_as_mp4
from worker.core.models import SegmentPlan, VideoInfo
from worker.errors import DescriberRejected

OPTS = {"segment_seconds": 2, "fps": 2}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, clip_12s: Path) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("jobs")) as a:
        shutil.copy(clip_12s, a.media / "clip.mp4")
        yield a


def refused(resp: object, status: int, code: str | None = None, field: str | None = None) -> dict[str, object]:
    from httpx import Response

    assert isinstance(resp, Response)
    assert resp.status_code == status, resp.text
    err = error_of(resp)
    if code is not None:
        assert err["code"] == code, err
    if field is not None:
        assert err["field"] == field, err
    return err


# -- submit: JSON -------------------------------------------------------------------------------
def test_dry_run_returns_the_estimate_and_queues_nothing(api: Api) -> None:
    queued, stored = len(api.enqueuer.jobs), len(api.store().list_jobs(limit=500))
    with api.http() as http:
        resp = http.post("/v1/jobs", json={"path": str(api.media / "clip.mp4"), "dry_run": True, **OPTS})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["dry_run"] is True and body["video"]["duration_ms"] == 12_000
    assert body["estimate"]["segments"] == 6 and body["estimate"]["frames"] == 24
    assert len(api.enqueuer.jobs) == queued and len(api.store().list_jobs(limit=500)) == stored


def test_submit_queues_once_per_idempotency_key(api: Api) -> None:
    path = str(api.media / "clip.mp4")
    with api.http() as http:
        first = http.post("/v1/jobs", json={"path": path, **OPTS}, headers={"Idempotency-Key": "abc-1"})
        again = http.post("/v1/jobs", json={"path": path, "fps": 1}, headers={"Idempotency-Key": "abc-1"})
        other = http.post("/v1/jobs", json={"path": path, **OPTS}, headers={"Idempotency-Key": "abc-2"})
    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["created"] is True and again.json()["created"] is False
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] != other.json()["id"]
    assert again.json()["options"] == {"segment_seconds": 2.0, "fps": 2.0}  # the first request's options
    assert api.enqueuer.jobs.count(first.json()["id"]) == 1 and other.json()["id"] in api.enqueuer.jobs
    assert first.json()["source_kind"] == "path" and first.json()["source_name"] == "clip.mp4"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"path": "x", "colour": "red"}', "colour"),
        ('{"path": "x", "fps": NaN}', "fps"),
        ('{"path": "x", "fps": Infinity}', "fps"),
        ('{"path": "x", "fps": 1e309}', "fps"),
        ('{"path": "x", "fps": "inf"}', "fps"),
        ('{"path": "x", "fps": 0}', "fps"),
        ('{"path": "x", "fps": -1}', "fps"),
        ('{"path": "x", "fps": true}', "fps"),
        ('{"path": "x", "fps": "2"}', "fps"),
        ('{"path": "x", "segment_seconds": 0}', "segment_seconds"),
        ('{"path": "x", "segment_seconds": NaN}', "segment_seconds"),
        ('{"path": "x", "prompt": "a\\u0000b"}', "prompt"),
        ('{"path": "x", "dry_run": "yes"}', "dry_run"),
        ('{"path": "x", "describer": "gpt"}', "describer"),
        ('{"path": "x", "prompt": "' + "y" * 5000 + '"}', "prompt"),
    ],
)
def test_bad_bodies_are_422_naming_the_field(api: Api, raw: str, field: str) -> None:
    with api.http() as http:
        resp = http.post("/v1/jobs", content=raw, headers={"Content-Type": "application/json"})
    err = refused(resp, 422, field=field)
    if field == "colour":
        assert err["code"] == "unknown_field" and "colour" in str(err["message"])


@pytest.mark.parametrize("raw", ['{"prompt": "\\ud800"}', "{not json", "[1, 2]", '"a string"', ""])
def test_malformed_json_is_422(api: Api, raw: str) -> None:
    with api.http() as http:
        resp = http.post("/v1/jobs", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422, resp.text
    error_of(resp)


def test_source_rules(api: Api) -> None:
    path = str(api.media / "clip.mp4")
    queued = len(api.enqueuer.jobs)
    with api.http() as http:
        refused(http.post("/v1/jobs", json={}), 422, field="path")
        refused(http.post("/v1/jobs", json={"path": path, "url": "https://example.org/v.mp4"}), 422, field="path")
        refused(http.post("/v1/jobs", content=b"path=x", headers={"Content-Type": "text/plain",
                                                                   "X-Framescribe-Client": "tests"}), 415)  # fmt: skip
        refused(http.post("/v1/jobs", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                          headers={"Content-Type": "application/json"}), 413, "too_large")  # fmt: skip
        refused(http.post("/v1/jobs", json={"path": path}, headers={"Idempotency-Key": "k" * 200}), 422)
    assert len(api.enqueuer.jobs) == queued


def test_path_traversal_matrix(api: Api, tmp_path: Path) -> None:
    media = api.media
    outside = tmp_path / "secret.mp4"
    shutil.copy(media / "clip.mp4", outside)
    (media / "link-out.mp4").symlink_to(outside)
    (media / "link-etc").symlink_to("/etc")
    (media / "dev-zero.mp4").symlink_to("/dev/zero")
    (media / "dir.mp4").mkdir()
    os.mkfifo(media / "pipe.mp4")
    cases = [
        "../etc/passwd",
        f"{media}/../../etc/passwd",
        f"{media}/../{outside.parent.name}/secret.mp4",
        "/etc/passwd",
        str(outside),
        f"{media}/%2e%2e/%2e%2e/etc/passwd",
        f"{media}/link-out.mp4",
        f"{media}/link-etc/passwd",
        f"{media}/dev-zero.mp4",
        f"{media}/dir.mp4",
        f"{media}/pipe.mp4",
        f"{media}/missing.mp4",
        f"{media}/" + "a" * 5000,
        "",
    ]
    before = len(api.enqueuer.jobs)
    with api.http() as http:
        for path in cases:
            err = refused(http.post("/v1/jobs", json={"path": path}), 422)
            assert err["field"] in ("path", None), (path, err)
            assert "root:" not in str(err["message"])  # never the content of a file
        refused(http.post("/v1/jobs", content=b'{"path": "a\\u0000b"}', headers={"Content-Type": "application/json"}),
                422, field="path")  # fmt: skip
    assert len(api.enqueuer.jobs) == before


def test_oversized_bodies_are_413_also_when_chunked(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    with api.http() as http:
        for path in ("/v1/jobs", "/v1/schedules"):
            resp = http.post(path, content=chunks(), headers={"Content-Type": "application/json"})
            refused(resp, 413, "too_large")


def test_files_that_are_not_videos_are_refused_before_queueing(api: Api) -> None:
    text_as_mp4(api.media / "text.mp4")
    (api.media / "list.mp4").write_text("#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n")
    audio_only(api.media / "audio.mp4")
    (api.media / "empty.mp4").write_bytes(b"")
    with api.http() as http:
        assert "text" in str(refused(http.post("/v1/jobs", json={"path": str(api.media / "text.mp4")}), 422,
                                     "not_a_video")["message"])  # fmt: skip
        assert "playlist" in str(refused(http.post("/v1/jobs", json={"path": str(api.media / "list.mp4")}), 422,
                                         "not_a_video")["message"])  # fmt: skip
        refused(http.post("/v1/jobs", json={"path": str(api.media / "audio.mp4")}), 422)
        refused(http.post("/v1/jobs", json={"path": str(api.media / "empty.mp4")}), 422)


def test_budget_caps_refuse_before_queueing(api: Api) -> None:
    body = {"path": str(api.media / "clip.mp4"), "describer": "dashscope", "max_calls": 2, **OPTS}
    with api.http() as http:
        err = refused(http.post("/v1/jobs", json=body), 422, "budget_exceeded")
    assert "6 model calls" in str(err["message"])


def test_queue_down_is_503_and_leaves_no_job(api: Api) -> None:
    api.enqueuer.down = True
    try:
        with api.http() as http:
            resp = http.post("/v1/jobs", json={"path": str(api.media / "clip.mp4"), **OPTS},
                             headers={"Idempotency-Key": "down-1"})  # fmt: skip
        refused(resp, 503, "queue_unavailable")
        assert api.store().job_by_key("local:down-1") is None
    finally:
        api.enqueuer.down = False


# -- submit: uploads ----------------------------------------------------------------------------
def test_upload_is_streamed_sniffed_and_queued(api: Api) -> None:
    data = (api.media / "clip.mp4").read_bytes()
    with api.http() as http:
        http.headers["X-Framescribe-Client"] = "tests"  # no keys: form-encoded writes say who sends them
        resp = http.post("/v1/jobs", files={"file": ("my clip.mp4", data, "video/mp4")}, data={"options": '{"fps": 2}'})
        dry = http.post(
            "/v1/jobs",
            files={"file": ("d.mp4", data)},
            data={"options": '{"dry_run": true, "fps": 2, "segment_seconds": 2}'},
        )
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert job["source_kind"] == "upload" and job["source_name"] == "my_clip.mp4" and job["id"] in api.enqueuer.jobs
    stored = Path(api.store().get_job(job["id"]).source)
    assert stored.read_bytes() == data and stored.is_relative_to(api.settings.data_dir.resolve())
    assert dry.status_code == 200 and dry.json()["estimate"]["segments"] == 6
    uploads = api.settings.data_dir / "uploads"
    assert sorted(p.name for p in uploads.iterdir()) == [stored.parent.name]  # the dry run's copy is gone


def test_upload_refusals(api: Api) -> None:
    uploads = api.settings.data_dir / "uploads"
    before = sorted(uploads.iterdir()) if uploads.exists() else []
    with api.http() as http:
        http.headers["X-Framescribe-Client"] = "tests"
        big = b"\x00\x00\x00\x18ftypisom" + b"\0" * (9 * 1024 * 1024)
        refused(http.post("/v1/jobs", files={"file": ("big.mp4", big)}), 413, "too_large", "file")
        refused(http.post("/v1/jobs", files={"file": ("t.mp4", b"hello " * 100)}), 422, "not_a_video", "file")
        refused(http.post("/v1/jobs", files={"file": ("t.mp4", b"")}), 422, field="file")
        refused(http.post("/v1/jobs", files={"other": ("t.mp4", b"x")}), 422)
        refused(http.post("/v1/jobs", files={"file": ("t.mp4", b"x")}, data={"options": '{"bogus": 1}'}), 422,
                "unknown_field", "options.bogus")  # fmt: skip
        refused(http.post("/v1/jobs", files={"file": ("t.mp4", b"x")}, data={"options": '{"path": "/etc"}'}), 422)
        refused(http.post("/v1/jobs", files={"file": ("t.mp4", b"x")}, data={"options": "{nope"}), 422, "invalid_json")
        refused(http.post("/v1/jobs", content=b"--x\r\ngarbage", headers={"Content-Type": "multipart/form-data"}), 415)
    after = sorted(uploads.iterdir()) if uploads.exists() else []
    assert after == before  # every refused upload was removed


# -- read and control ---------------------------------------------------------------------------
def _job(api: Api, **kw: object) -> str:
    job, _ = api.store().create_job(str(api.media / "clip.mp4"), "clip.mp4", dict(OPTS), **kw)
    return str(job.id)


def _planned(api: Api, n: int = 3) -> str:
    from fractions import Fraction

    store = api.store()
    job_id = _job(api)
    info = VideoInfo(duration_ms=6000, fps=25.0, frame_count=150, width=320, height=240, codec="h264", size_bytes=1)
    plans = [SegmentPlan(i, i * 2000, i * 2000 + 2000, Fraction(2), (i * 2000,)) for i in range(n)]
    store.plan_job(job_id, info, plans)
    store.set_job_state(job_id, "running")
    return job_id


def test_list_pagination_filters_and_cursor(api: Api) -> None:
    ids = [_job(api) for _ in range(5)]
    seen: list[str] = []
    cursor = None
    with api.http() as http:
        while True:
            page = http.get("/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
            seen += [j["id"] for j in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen[:5] == ids[::-1]  # newest first
        assert len(seen) == len(set(seen))
        refused(http.get("/v1/jobs", params={"cursor": "f" * 32}), 422, "invalid_cursor", "cursor")
        refused(http.get("/v1/jobs", params={"cursor": "../x"}), 422, field="cursor")
        refused(http.get("/v1/jobs", params={"state": "weird"}), 422, field="state")
        refused(http.get("/v1/jobs", params={"limit": 0}), 422, field="limit")
        refused(http.get("/v1/jobs", params={"source": "a\x00b"}), 422, field="source")
        queued = http.get("/v1/jobs", params={"state": "queued", "limit": 200}).json()["items"]
    assert set(ids) <= {j["id"] for j in queued}


def test_unknown_and_malformed_ids(api: Api) -> None:
    with api.http() as http:
        refused(http.get("/v1/jobs/" + "0" * 32), 404, "not_found")
        refused(http.get("/v1/jobs/not-an-id"), 422, field="job_id")
        refused(http.get("/v1/nothing"), 404, "not_found")
        refused(http.put("/v1/jobs"), 405, "method_not_allowed")
        refused(http.get(f"/v1/jobs/{'0' * 32}/frames/0/0.jpg"), 404)


def test_summary_not_ready_then_cancel_then_retry_then_delete(api: Api) -> None:
    store = api.store()
    job_id = _planned(api)
    frames = api.settings.data_dir / "jobs" / job_id / "seg_00000"
    frames.mkdir(parents=True)
    (frames / "f.jpg").write_bytes(b"\xff\xd8\xff")
    with api.http() as http:
        refused(http.get(f"/v1/jobs/{job_id}/summary"), 409, "not_ready")
        refused(http.post(f"/v1/jobs/{job_id}/retry"), 409, "not_retryable")
        cancelled = http.post(f"/v1/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        assert cancelled.json()["progress"] == {"cancelled": 3}
        refused(http.post(f"/v1/jobs/{job_id}/cancel"), 409, "already_ended")
        retried = http.post(f"/v1/jobs/{job_id}/retry")
        assert retried.status_code == 202 and retried.json()["state"] == "queued"
        assert retried.json()["progress"] == {"pending": 3} and api.enqueuer.jobs[-1] == job_id
        assert http.delete(f"/v1/jobs/{job_id}").status_code == 204
        refused(http.get(f"/v1/jobs/{job_id}"), 404)
        refused(http.delete(f"/v1/jobs/{job_id}"), 404)
    assert not frames.exists() and store.counts(job_id) == {}


def test_retry_reruns_only_failed_segments(api: Api) -> None:
    store = api.store()
    job_id = _planned(api)
    store.claim_segment(job_id, 1)
    store.fail_segment(job_id, 1, DescriberRejected("the provider said 400").message)
    store.set_job_state(job_id, "partial")
    with api.http() as http:
        job = http.get(f"/v1/jobs/{job_id}").json()
        assert job["progress"] == {"pending": 2, "failed": 1}
        segs = http.get(f"/v1/jobs/{job_id}/segments", params={"after": 0, "limit": 1}).json()
        assert [s["index"] for s in segs["items"]] == [1] and segs["next_after"] == 1
        assert segs["items"][0]["error"] == "the provider said 400"
        assert segs["items"][0]["reused_from"] is None and segs["items"][0]["flags"] == []
        assert http.post(f"/v1/jobs/{job_id}/retry").status_code == 202
    assert store.counts(job_id) == {"pending": 3}


def test_inline_mode_runs_jobs_without_a_broker(tmp_path: Path, clip_12s: Path) -> None:
    from scheduler.main import create_app
    from tests.integration.api_fixtures import api_settings, serve, wait_for

    settings = api_settings(tmp_path)
    shutil.copy(clip_12s, settings.allowed_roots[0] / "clip.mp4")
    with serve(create_app(settings, inline=True)) as base, client(base) as http:
        job = http.post("/v1/jobs", json={"path": str(settings.allowed_roots[0] / "clip.mp4"), **OPTS}).json()
        done = wait_for(lambda: (j := http.get(f"/v1/jobs/{job['id']}").json())["state"] == "done" and j, 60,
                        "the inline job")  # fmt: skip
        assert done["progress"] == {"done": 6}
        assert http.get("/readyz").json()["status"] == "ready"


def test_metrics_expose_jobs_and_api_latency(api: Api) -> None:
    _job(api)
    with api.http() as http:
        text = http.get("/metrics").text
    assert 'framescribe_jobs{state="queued"}' in text
    assert "framescribe_stage_latency_seconds_bucket" in text
    assert 'framescribe_http_request_duration_seconds_count{method="POST",route="/v1/jobs"' in text
    assert "framescribe_queue_depth" in text
