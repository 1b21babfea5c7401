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
from worker.adapters.stores.blobs import MAX_BYTES, blob_table

pytestmark = pytest.mark.services
SECRET = "internal-test-secret-0123456789"
JOBS = 3
OPTS = {"segment_seconds": 2, "fps": 2}


class Machines:
    def __init__(self, c: Cluster, base: str, api_data: Path, dirs: list[Path]) -> None:
        self.c, self.base, self.api_data, self.dirs = c, base, api_data, dirs


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machines]:
    from scheduler.main import create_app

    tmp = tmp_path_factory.mktemp("no-shared-disk")
    settings = api_settings(tmp / "api", security={"internal_secret": SECRET})
    with ExitStack() as stack:
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
            resp = http.post("/v1/jobs", files=files)
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
