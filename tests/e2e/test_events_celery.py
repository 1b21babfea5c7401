"""Event streams pushed by real ``celery worker`` processes (issue 14, item 7): REST on uvicorn, Redis,
two workers. The feed's fallback poll is set to ten minutes, so every event a stream gets before the
job ends was pushed by a worker's change notice on Redis; three viewers share one read per change.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.main import create_app
from tests.integration.api_fixtures import API_DB, API_REDIS, client, serve
from tests.integration.celery_fixtures import Cluster, cluster
from tests.integration.test_security_events import Stream, metric, wait_until

pytestmark = [pytest.mark.services, pytest.mark.security]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, clip_12s: Path) -> Iterator[tuple[Cluster, str, Path]]:
    tmp = tmp_path_factory.mktemp("events-celery")
    media = tmp / "media"
    media.mkdir()
    shutil.copy(clip_12s, media / "clip.mp4")
    with cluster(tmp, f"sqlite:///{tmp / 'fs.db'}", broker_url=f"{API_REDIS}/{API_DB}") as c:
        security = c.settings.security.model_copy(update={"event_fallback_poll_s": 600.0})
        settings = c.settings.model_copy(update={"allowed_roots": [media], "security": security})
        with serve(create_app(settings)) as base:
            yield c, base, media


def test_workers_push_every_change_to_every_viewer(service: tuple[Cluster, str, Path]) -> None:
    _, base, media = service
    with client(base, timeout=60) as http:
        resp = http.post("/v1/jobs", json={"path": str(media / "clip.mp4"), "segment_seconds": 2, "fps": 2})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    viewers = [Stream(base, job_id) for _ in range(3)]
    for v in viewers:
        wait_until(lambda v=v: v.has(lambda n, d: n == "end"), "the pushed end of the job", timeout=120)
    for v in viewers:
        assert sorted(d["index"] for n, d in v.events if n == "segment") == list(range(6))
        assert all(d["description"] for n, d in v.events if n == "segment")
        assert v.events[-1] == ("end", {"job_id": job_id, "state": "done"})
    # planned + 6 segments + done, plus each feed's first read: never a read per viewer per poll
    assert metric(base, "framescribe_event_feed_reads") <= 6 + 2 + 1
