"""Workers on two "machines" without a shared disk (issue 16): the API and two real Celery workers, each
with its own ``FRAMESCRIBE_DATA_DIR``, share only the result store and the broker.

Upload jobs are planned and sampled by workers that fetch the upload from the API over a signed internal
link; every frame URL, search thumbnail and export link is served by the API from the review copies in
the store; DELETE plus each worker's sweep clears every data folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from tests.integration.api_fixtures import API_DB, API_REDIS, api_settings, client, serve, wait_for
from tests.integration.celery_fixtures import Cluster, Worker, cluster
from tests.integration.store_fixtures import pg_database
from worker.adapters.stores.blobs import MAX_BYTES, blob_table

pytestmark = pytest.mark.services
SECRET = "internal-test-secret-0123456789"
JOBS = 3
OPTS = {"segment_seconds": 2, "fps": 2}
SCRIPT = {"X-Framescribe-Client": "tests"}  # no API keys: form-encoded writes say who sends them


class Machines:
    def __init__(self, c: Cluster, base: str, api_data: Path, dirs: list[Path]) -> None:
        self.c, self.base, self.api_data, self.dirs = c, base, api_data, dirs


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machines]:
    from scheduler.main import create_app

    tmp = tmp_path_factory.mktemp("no-shared-disk")
    with ExitStack() as stack:
        # machines share the PostgreSQL store and Redis, never a file
        database_url = stack.enter_context(pg_database("fs_noshare"))
        settings = api_settings(tmp / "api", database_url=database_url, security={"internal_secret": SECRET})
        c = stack.enter_context(
            cluster(tmp / "cluster", settings.resolved_database_url, broker_url=f"{API_REDIS}/{API_DB}", workers=0)
        )
        settings = settings.model_copy(update={"worker": c.settings.worker, "broker_url": c.settings.broker_url})
        base = stack.enter_context(serve(create_app(settings)))
        dirs = [tmp / f"machine{i}" for i in range(2)]
        for i, data in enumerate(dirs):
            env = {
                **c.env,
                "FRAMESCRIBE_DATA_DIR": str(data),
                "FRAMESCRIBE_WORKER__API_URL": base,
                "FRAMESCRIBE_SECURITY__INTERNAL_SECRET": SECRET,
                "FRAMESCRIBE_WORKER__SWEEP_INTERVAL_S": "5",
            }
            w = Worker(f"m{i}-{c.queue}", env, tmp / f"machine{i}.log", c.queue)
            w.start()
            c.workers.append(w)
        for w in c.workers:
            w.wait_ready()
        yield Machines(c, base, settings.data_dir, dirs)


def _jpeg_ok(data: bytes) -> bool:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return image is not None and max(image.shape[:2]) <= 640


def _get_ok(http: Any, url: str) -> bytes:
    resp = http.get(url)
    assert resp.status_code == 200, (url, resp.status_code, resp.text[:300])
    return bytes(resp.content)


def test_upload_jobs_frames_search_exports_and_delete_work_without_a_shared_disk(
    machines: Machines, clip_12s: Path
) -> None:
    m = machines
    clip = clip_12s.read_bytes()
    with client(m.base, timeout=60) as http:
        ids = []
        for _ in range(JOBS):
            files = {"file": ("clip.mp4", clip, "video/mp4"), "options": (None, json.dumps(OPTS))}
            resp = http.post("/v1/jobs", files=files, headers=SCRIPT)
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
        for job_id in ids:
            job = m.c.wait(job_id, timeout=180)
            assert job.state == "done", (job.state, job.error, m.c.logs()[-3000:])

        # each machine fetched the uploads it needed into its own data folder; no frame was written on the API's
        fetched = [d for d in m.dirs if any((d / "sources" / j / "source.video").is_file() for j in ids)]
        assert fetched, "no worker fetched an upload"
        assert "fetched the upload from the API" in m.c.logs()
        for d in fetched:
            for j in ids:
                copy = d / "sources" / j / "source.video"
                assert not copy.exists() or copy.read_bytes() == clip
        sampled = [d for d in m.dirs if any((d / "jobs" / j).is_dir() for j in ids)]
        assert len(sampled) == 2, f"both machines should have sampled segments: {sampled}"
        assert not (m.api_data / "jobs").exists()

        frame_urls: list[str] = []
        for job_id in ids:
            items = http.get(f"/v1/jobs/{job_id}/segments").json()["items"]
            assert items and all(i["state"] == "done" for i in items)
            for item in items:
                assert item["frames"], item
                frame_urls += item["frames"]
        for url in frame_urls:  # every frame: its review copy from the store (the API's disk has none)
            data = _get_ok(http, url)
            assert len(data) <= MAX_BYTES and _jpeg_ok(data), url

        # search thumbnails
        text = http.get(f"/v1/jobs/{ids[0]}/segments").json()["items"][0]["description"]
        word = next(w for w in re.findall(r"[A-Za-z]{4,}", text))
        hits = http.get("/v1/search", params={"q": word, "mode": "text"}).json()["items"]
        thumbs = [h["thumbnail"] for h in hits if h.get("thumbnail")]
        assert thumbs, hits
        for url in thumbs:
            assert _jpeg_ok(_get_ok(http, url))

        # exports name frames by API links, and those answer
        export = http.get(f"/v1/jobs/{ids[1]}/export", params={"format": "json"})
        assert export.status_code == 200
        links = sorted(set(re.findall(r"/v1/jobs/[0-9a-f]{32}/frames/\d+/\d+\.jpg", export.text)))
        assert links
        for url in links:
            assert _jpeg_ok(_get_ok(http, url))
        for fmt in ("md", "csv", "vtt"):
            assert http.get(f"/v1/jobs/{ids[1]}/export", params={"format": fmt}).status_code == 200

        # DELETE on the API reaches every machine: rows and review copies at once, files by each worker's sweep
        for job_id in ids:
            assert http.delete(f"/v1/jobs/{job_id}").status_code == 204
        with m.c.store.session() as s:
            left = s.execute(select(func.count()).select_from(blob_table).where(blob_table.c.job_id.in_(ids))).scalar()
        assert left == 0
        assert not any((m.api_data / "uploads").glob("*/source.video"))

        def cleared() -> bool:
            return not any((d / sub / j).exists() for d in m.dirs for sub in ("jobs", "sources") for j in ids)

        wait_for(cleared, 60, "every worker's sweep to remove the deleted jobs' files")
        assert "frame retention:" in m.c.logs()


def test_a_real_worker_that_cannot_fetch_the_upload_fails_the_job_with_the_reason(machines: Machines) -> None:
    # an upload the API does not hold (its job row names another API's folder): the API answers 404
    job_id = machines.c.submit(f"/elsewhere/uploads/{'2' * 32}/source.video", **OPTS)
    job = machines.c.wait(job_id, timeout=120)
    assert job.state == "failed", (job.state, job.error)
    assert job.error and "cannot fetch the job's upload from the API" in job.error and "HTTP 404" in job.error
    assert "sig=" not in job.error and SECRET not in job.error


# -- the internal upload link, and what a worker does when it cannot fetch -----------------------------------
@pytest.fixture(scope="module")
def upload_api(tmp_path_factory: pytest.TempPathFactory, clip_12s: Path) -> Iterator[tuple[Any, str, str]]:
    """An API with an internal secret and one upload job and one path job (nothing runs them)."""
    from tests.integration.api_fixtures import running_api

    tmp = tmp_path_factory.mktemp("internal-link")
    with running_api(tmp, security={"internal_secret": SECRET}) as api, api.http() as http:
        files = {"file": ("c.mp4", clip_12s.read_bytes(), "video/mp4"), "options": (None, json.dumps(OPTS))}
        upload_id = http.post("/v1/jobs", files=files, headers=SCRIPT).json()["id"]
        (api.media / "c.mp4").write_bytes(clip_12s.read_bytes())
        path_id = http.post("/v1/jobs", json={"path": str(api.media / "c.mp4"), **OPTS}).json()["id"]
        yield api, upload_id, path_id


def test_internal_link_must_be_signed_unexpired_and_name_an_upload(
    upload_api: tuple[Any, str, str], clip_12s: Path
) -> None:
    import time

    from worker.core.links import MAX_TTL_S, upload_link, upload_sig

    api, upload_id, path_id = upload_api
    now = int(time.time())
    path = f"/internal/v1/jobs/{upload_id}/source.video"
    with api.http() as http:
        good = http.get(upload_link("", SECRET, upload_id, now=now))
        assert good.status_code == 200 and good.content == clip_12s.read_bytes()
        assert good.headers["content-type"] == "video/mp4" and good.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in good.headers["content-security-policy"]
        refused = {
            "unsigned": http.get(path),
            "wrong key": http.get(upload_link("", "another-secret", upload_id, now=now)),
            "expired": http.get(path, params={"exp": now - 1, "sig": upload_sig(SECRET, upload_id, now - 1)}),
            "too long": http.get(
                path, params={"exp": now + MAX_TTL_S + 60, "sig": upload_sig(SECRET, upload_id, now + MAX_TTL_S + 60)}
            ),
            "other job's sig": http.get(
                f"/internal/v1/jobs/{path_id}/source.video",
                params={"exp": now + 60, "sig": upload_sig(SECRET, upload_id, now + 60)},
            ),
        }
        for why, resp in refused.items():
            assert resp.status_code == 403, (why, resp.status_code)
            assert resp.json()["error"]["code"] == "forbidden"
        not_upload = http.get(upload_link("", SECRET, path_id, now=now))
        assert not_upload.status_code == 404 and not_upload.json()["error"]["code"] == "not_an_upload"
        missing = http.get(upload_link("", SECRET, "f" * 32, now=now))
        assert missing.status_code == 404


def test_internal_links_are_off_without_a_secret(tmp_path: Path) -> None:
    from tests.integration.api_fixtures import running_api
    from worker.core.links import upload_link

    with running_api(tmp_path) as api, api.http() as http:
        resp = http.get(upload_link("", SECRET, "a" * 32, now=__import__("time").time()))
        assert resp.status_code == 404


def _worker_settings(tmp: Path, api_url: str | None, **scheduler: Any) -> Any:
    from worker.config import load_settings

    return load_settings(
        data_dir=tmp / "worker-data",
        database_url=f"sqlite:///{tmp / 'w.db'}",
        describer={"kind": "local"},
        worker={"api_url": api_url},
        security={"internal_secret": SECRET},
        limits={"download_timeout_s": 10},
        scheduler={"allow_private_urls": ["127.0.0.1"], **scheduler},
    )


def test_worker_fetch_failures_are_clear_errors(
    upload_api: tuple[Any, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.celery_fixtures import free_port
    from worker.errors import SourceError
    from worker.service import sources
    from worker.service.sources import download_dir, local_path

    monkeypatch.setattr(sources, "FETCH_PAUSES_S", (0.05, 0.05))  # the API-down case tries 3 times

    api, upload_id, _ = upload_api
    source = api.store().get_job(upload_id).source
    base = api.base
    # fetched once per machine into the worker's own folder
    ok = _worker_settings(tmp_path / "ok", str(base))
    got = Path(local_path(ok, upload_id, source))
    assert got.parent == download_dir(ok, upload_id) and got.read_bytes() == Path(source).read_bytes()
    assert local_path(ok, upload_id, source) == str(got)
    # machines with the same data folder path: the upload's path names this machine's folder, but no file is there
    same = _worker_settings(tmp_path / "same", str(base))
    here = same.data_dir / "uploads" / ("1" * 32) / "source.video"
    fetched = Path(local_path(same, upload_id, str(here)))
    assert fetched.parent == download_dir(same, upload_id) and fetched.read_bytes() == got.read_bytes()

    cases = {
        "API down": (_worker_settings(tmp_path / "down", f"http://127.0.0.1:{free_port()}"), upload_id, "ConnectError"),
        "too big": (_worker_settings(tmp_path / "big", str(base), max_upload_bytes=1000), upload_id, "limit of 1000"),
        "unknown job": (_worker_settings(tmp_path / "gone", str(base)), "e" * 32, "HTTP 404"),
    }
    for why, (settings, job_id, words) in cases.items():
        with pytest.raises(SourceError) as err:
            local_path(settings, job_id, source)
        assert "cannot fetch the job's upload from the API" in err.value.message and words in err.value.message, why
        assert SECRET not in err.value.message and "sig=" not in err.value.message
        dest = download_dir(settings, job_id)
        assert not any(p for p in dest.iterdir() if not p.name.startswith(".lock")), why  # nothing half-written

    unset = _worker_settings(tmp_path / "unset", None)
    with pytest.raises(SourceError, match=r"set worker\.api_url"):
        local_path(unset, upload_id, "/elsewhere/uploads/" + "1" * 32 + "/source.video")


def test_an_api_that_answers_503_or_is_restarting_is_tried_again(
    tmp_path: Path, clip_12s: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.api_fixtures import LoopbackServer, Recorded
    from worker.errors import SourceError
    from worker.service import sources

    monkeypatch.setattr(sources, "FETCH_PAUSES_S", (0.05, 0.05))
    clip = clip_12s.read_bytes()
    source = f"/api/uploads/{'3' * 32}/source.video"

    def flaky(answers: list[int]) -> LoopbackServer:
        def respond(req: Recorded) -> tuple[int, dict[str, str], bytes]:
            status = answers.pop(0) if answers else 200
            return (status, {"Content-Type": "video/mp4"}, clip) if status == 200 else (status, {}, b"busy")

        return LoopbackServer(respond)

    with flaky([503, 502]) as server:
        settings = _worker_settings(tmp_path / "back", server.url(""))
        got = Path(sources.local_path(settings, "4" * 32, source))
        assert got.read_bytes() == clip and len(server.hits) == 3
        assert server.hits[0].path.startswith(f"/internal/v1/jobs/{'4' * 32}/source.video?exp=")
    with flaky([503] * 5) as server:
        settings = _worker_settings(tmp_path / "never", server.url(""))
        with pytest.raises(SourceError, match="HTTP 503"):
            sources.local_path(settings, "5" * 32, source)
        assert len(server.hits) == 3  # bounded
    with flaky([403]) as server:  # a refusal is not retried
        settings = _worker_settings(tmp_path / "refused", server.url(""))
        with pytest.raises(SourceError, match="HTTP 403"):
            sources.local_path(settings, "6" * 32, source)
        assert len(server.hits) == 1


def test_a_job_whose_upload_cannot_be_fetched_ends_failed_with_the_reason(
    upload_api: tuple[Any, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.celery_fixtures import free_port
    from worker.bootstrap import inline_ports
    from worker.errors import FramescribeError
    from worker.service import jobs, sources

    monkeypatch.setattr(sources, "FETCH_PAUSES_S", (0.05, 0.05))

    api, upload_id, _ = upload_api
    settings = _worker_settings(tmp_path, f"http://127.0.0.1:{free_port()}")
    ports = inline_ports(settings)
    job, _ = ports.store.create_job(api.store().get_job(upload_id).source, "c.mp4", OPTS)
    with pytest.raises(FramescribeError):
        jobs.run(ports, job.id)
    ended = ports.store.get_job(job.id)
    assert ended.state == "failed" and ended.error and "cannot fetch the job's upload from the API" in ended.error


# -- review copies and the sweep --------------------------------------------------------------------------
def test_review_copies_are_bounded_and_garbage_is_skipped() -> None:
    from worker.adapters.stores.blobs import review_jpeg

    noise = np.random.default_rng(7).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    ok, big = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok and len(big) > MAX_BYTES
    small = review_jpeg(bytes(big), 640)
    assert small is not None and len(small) <= MAX_BYTES and _jpeg_ok(small)
    assert review_jpeg(b"not a jpeg", 640) is None


def test_review_copies_come_from_the_sampler_and_from_files_only_when_it_made_none(
    tmp_path: Path, clip_12s: Path
) -> None:
    """A job's copies are made while sampling (the frame files are never decoded again); ``put`` takes a copy
    it is given without reading the file, and reads the file for a frame it was given none for."""
    from unittest import mock

    from worker.adapters.stores import blobs as blobs_module
    from worker.bootstrap import inline_ports
    from worker.config import load_settings
    from worker.core.models import FrameRef
    from worker.service import jobs

    ports = inline_ports(load_settings(data_dir=tmp_path, describer={"kind": "local"}))
    job, _ = ports.store.create_job(str(clip_12s), "clip.mp4", {"segment_seconds": 6, "fps": 1})
    with mock.patch.object(blobs_module, "review_jpeg", side_effect=AssertionError("a frame file was decoded")):
        assert jobs.run(ports, job.id).segments_done == 2
    assert ports.blobs is not None
    for index in (0, 1):
        for f in ports.store.frames(job.id, index):
            copy = ports.blobs.get(job.id, index, f.n)
            assert copy is not None and _jpeg_ok(copy)
    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 200, np.uint8))
    assert ok
    (tmp_path / "on_disk.jpg").write_bytes(bytes(jpeg))
    refs = [
        FrameRef(0, 0, str(tmp_path / "gone.jpg"), 64, 48, 1),
        FrameRef(1, 500, str(tmp_path / "on_disk.jpg"), 64, 48, 1),
    ]
    ports.blobs.put(job.id, 0, refs, {refs[0].path: b"made by the sampler"})
    assert ports.blobs.get(job.id, 0, 0) == b"made by the sampler"  # the file is gone: not read
    from_file = ports.blobs.get(job.id, 0, 1)
    assert from_file is not None and _jpeg_ok(from_file)


def test_sweep_removes_only_deleted_jobs_and_refuses_a_foreign_store(tmp_path: Path) -> None:
    from worker.config import load_settings
    from worker.retention import SANITY_MIN, GcReport, sweep_deleted

    settings = load_settings(data_dir=tmp_path)
    alive, gone = "a" * 32, "b" * 32
    for sub in ("jobs", "sources"):
        for job in (alive, gone, "not-a-job"):
            (tmp_path / sub / job).mkdir(parents=True)
    report = GcReport()
    sweep_deleted(settings, lambda ids: {alive} & set(ids), report)
    assert report.deleted_jobs_swept == 1
    for sub in ("jobs", "sources"):
        assert sorted(p.name for p in (tmp_path / sub).iterdir()) == sorted([alive, "not-a-job"])

    for i in range(SANITY_MIN):
        (tmp_path / "jobs" / f"{i:032x}").mkdir()
    report = GcReport()
    sweep_deleted(settings, lambda ids: set(), report)  # a store that knows none of them: not ours
    assert report.deleted_jobs_swept == 0 and (tmp_path / "jobs" / alive).is_dir()


def test_gc_command_sweeps_deleted_jobs_and_reports_a_down_store(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.integration.celery_fixtures import REPO, free_port
    from worker.adapters.stores.sql import SqlResultStore

    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = SqlResultStore(url)
    kept, _ = store.create_job("/x/a.mp4", "a.mp4", OPTS)
    store.close()
    data = tmp_path / "data"
    for job in (kept.id, "c" * 32):
        (data / "jobs" / job / "seg_00000").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMESCRIBE_")}

    def gc(database_url: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "worker.cli", "gc", "--data-dir", str(data)]
        run_env = {**env, "FRAMESCRIBE_DATABASE_URL": database_url}
        return subprocess.run(cmd, capture_output=True, text=True, env=run_env, cwd=REPO, timeout=120)

    done = gc(url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["deleted_jobs_swept"] == 1
    assert sorted(p.name for p in (data / "jobs").iterdir()) == [kept.id]

    (data / "jobs" / ("d" * 32)).mkdir()
    down = gc(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    assert down.returncode != 0 and "Traceback" not in down.stderr and "store" in down.stderr
    assert (data / "jobs" / ("d" * 32)).is_dir()


def test_frame_url_falls_back_to_the_review_copy_then_answers_404(tmp_path: Path, clip_12s: Path) -> None:
    from tests.integration.api_fixtures import running_api
    from worker.bootstrap import inline_ports
    from worker.service import jobs

    with running_api(tmp_path) as api, api.http() as http:
        ports = inline_ports(api.settings)
        job, _ = ports.store.create_job(str(clip_12s), "clip.mp4", {"segment_seconds": 6, "fps": 1})
        jobs.run(ports, job.id)
        url = http.get(f"/v1/jobs/{job.id}/segments").json()["items"][0]["frames"][0]
        original = _get_ok(http, url)
        assert original == Path(ports.store.frames(job.id, 0)[0].path).read_bytes()  # on this disk: the file
        ports.frames.drop_job(job.id)  # as if another machine had sampled it
        copy = _get_ok(http, url)
        assert copy != original and _jpeg_ok(copy)
        with ports.store.session() as s, s.begin():
            s.execute(blob_table.delete().where(blob_table.c.job_id == job.id))
        gone = http.get(url)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


def test_internal_link_needs_no_api_key_when_keys_are_set(tmp_path: Path, clip_12s: Path) -> None:
    import time

    from tests.integration.api_fixtures import running_api
    from worker.core.links import upload_link

    with running_api(tmp_path, api_keys=["k-123"], security={"internal_secret": SECRET}) as api:
        with api.http("k-123") as http:
            files = {"file": ("c.mp4", clip_12s.read_bytes(), "video/mp4"), "options": (None, json.dumps(OPTS))}
            job_id = http.post("/v1/jobs", files=files, headers=SCRIPT).json()["id"]
        with api.http() as anonymous:  # a worker holds the internal secret, never an API key
            assert anonymous.get(f"/v1/jobs/{job_id}/source").status_code == 401
            resp = anonymous.get(upload_link("", SECRET, job_id, now=time.time()))
            assert resp.status_code == 200 and resp.content == clip_12s.read_bytes()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_retention_thins_review_copies_to_the_middle_frame(tmp_path: Path, kind: str) -> None:
    import contextlib
    from datetime import UTC, datetime, timedelta

    from worker.adapters.stores.blobs import SqlFrameBlobs, thin
    from worker.adapters.stores.schema import FrameDbRow
    from worker.adapters.stores.sql import SqlResultStore
    from worker.core.models import FrameRef

    with contextlib.ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else stack.enter_context(pg_database("fs_thin"))
        store = SqlResultStore(url)
        stack.callback(store.close)
        ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
        assert ok
        (tmp_path / "f.jpg").write_bytes(bytes(jpeg))
        jobs_ = [store.create_job(f"/x/{i}.mp4", f"{i}.mp4", OPTS)[0].id for i in range(2)]
        with store.session() as s, s.begin():
            for job_id in jobs_:
                for seg, count in ((0, 5), (1, 4)):
                    for n in range(count):
                        s.add(FrameDbRow(job_id=job_id, segment_index=seg, n=n, t_ms=n * 500, path="/gone.jpg",
                                         width=64, height=48, size_bytes=1))  # fmt: skip
        blobs = SqlFrameBlobs(store.engine)
        for job_id in jobs_:
            for seg, count in ((0, 5), (1, 4)):
                blobs.put(job_id, seg, [FrameRef(n, n * 500, str(tmp_path / "f.jpg"), 64, 48, 1) for n in range(count)])
        old, new = jobs_
        with store.session() as s, s.begin():  # the first job's copies are 10 days old
            s.execute(blob_table.update().where(blob_table.c.job_id == old)
                      .values(created_at=datetime.now(UTC) - timedelta(days=10)))  # fmt: skip
        cutoff = datetime.now(UTC) - timedelta(days=7)
        assert thin(store.engine, cutoff) == 7  # (5 - 1) + (4 - 1)
        assert thin(store.engine, cutoff) == 0  # idempotent: the middle frames stay

        def kept(job_id: str, seg: int) -> list[int]:
            return [n for n in range(5) if blobs.get(job_id, seg, n) is not None]

        assert kept(old, 0) == [2] and kept(old, 1) == [2]  # the frame retention keeps on disk too
        assert kept(new, 0) == [0, 1, 2, 3, 4] and kept(new, 1) == [0, 1, 2, 3]
