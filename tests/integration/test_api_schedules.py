"""Schedules without a beat process: the CRUD API and its RedBeat entries (Redis DB 6), the cron and
missed-run maths, and ``fire`` (the body of ``framescribe.fire_schedule``) run directly, also twice at
once, against a real folder and store.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from scheduler.schedules import FsSchedule, ScheduleMirror, configure_redbeat
from tests.integration.api_fixtures import API_REDIS, SPARE_DB, Api, error_of, running_api
from worker.adapters.stores.schedules import ScheduleStore
from worker.celery_app import make_app
from worker.config import Settings
from worker.core import signing
from worker.core.newfiles import FileFacts, check_glob, new_files
from worker.errors import PlanError
from worker.service.schedules import FireResult, fire

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def mirror_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, redis.Redis]]:
    from tests.integration.api_fixtures import api_settings

    tmp = tmp_path_factory.mktemp("schedules")
    settings = api_settings(tmp, broker_url=f"{API_REDIS}/{SPARE_DB}")
    producer = make_app(settings)
    configure_redbeat(producer, settings, max_interval_s=1)
    client = redis.Redis.from_url(settings.broker_url)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("Redis is not answering on 127.0.0.1:6379")
    with running_api(tmp, mirror=ScheduleMirror(producer), broker_url=settings.broker_url,
                     worker={"queue": settings.worker.queue}) as api:  # fmt: skip
        yield api, client
    for key in client.scan_iter(match=f"redbeat:{settings.worker.queue}:*"):
        client.delete(key)


def entry(api: Api, client: redis.Redis, schedule_id: str) -> dict[str, object] | None:
    key = f"redbeat:{api.settings.worker.queue}:fs-schedule:{schedule_id}"
    raw = client.hget(key, "definition")
    return json.loads(raw) if raw else None


def test_schedule_crud_mirrors_redbeat_entries(mirror_app: tuple[Api, redis.Redis]) -> None:
    api, client = mirror_app
    inbox = api.media / "crud"
    inbox.mkdir()
    body = {"name": "inbox", "cron": "*/5 * * * *", "timezone": "Europe/Berlin",
            "source": {"folder": str(inbox), "glob": "*.mp4"}, "options": {"fps": 2}}  # fmt: skip
    with api.http() as http:
        created = http.post("/v1/schedules", json=body)
        assert created.status_code == 201, created.text
        s = created.json()
        sid = s["id"]
        assert s["source"] == {"kind": "folder", "folder": str(inbox.resolve()), "glob": "*.mp4", "settle_s": 5.0,
                               "max_files_per_run": 100}  # fmt: skip
        nxt = datetime.fromisoformat(s["next_run_at"])
        assert timedelta(0) <= nxt - datetime.now(UTC) <= timedelta(minutes=5, seconds=1)
        definition = entry(api, client, sid)
        assert definition is not None and definition["task"] == "framescribe.fire_schedule"
        assert definition["args"] == [sid]
        assert definition["schedule"] == {"__type__": "fs_schedule", "cron": "*/5 * * * *", "tz": "Europe/Berlin",
                                          "interval_s": None}  # fmt: skip

        changed = http.patch(f"/v1/schedules/{sid}", json={"interval_s": 30})
        assert changed.status_code == 200 and changed.json()["cron"] is None and changed.json()["interval_s"] == 30
        assert entry(api, client, sid)["schedule"]["interval_s"] == 30  # type: ignore[index]
        off = http.patch(f"/v1/schedules/{sid}", json={"enabled": False})
        assert off.json()["enabled"] is False and off.json()["next_run_at"] is None
        assert entry(api, client, sid) is None
        assert http.patch(f"/v1/schedules/{sid}", json={"enabled": True}).status_code == 200
        assert entry(api, client, sid) is not None

        listed = http.get("/v1/schedules").json()["items"]
        assert [x["id"] for x in listed] == [sid]
        run = http.post(f"/v1/schedules/{sid}/run")
        assert run.status_code == 202 and run.json()["schedule_id"] == sid and api.enqueuer.fires == [sid]

        assert http.delete(f"/v1/schedules/{sid}").status_code == 204
        assert entry(api, client, sid) is None
        assert http.get(f"/v1/schedules/{sid}").status_code == 404
        assert error_of(http.post(f"/v1/schedules/{sid}/run"))["code"] == "not_found"


def test_schedule_validation(mirror_app: tuple[Api, redis.Redis], tmp_path: Path) -> None:
    api, _ = mirror_app
    folder = api.media / "valid"
    folder.mkdir(exist_ok=True)
    src = {"folder": str(folder)}
    cases = [
        ({"name": "x", "cron": "* * *", "source": src}, "cron"),
        ({"name": "x", "cron": "61 * * * *", "source": src}, "cron"),
        ({"name": "x", "cron": "* * * * *", "timezone": "Mars/Base", "source": src}, "timezone"),
        ({"name": "x", "cron": "* * * * *", "timezone": "../../etc/passwd", "source": src}, "timezone"),
        ({"name": "x", "interval_s": 0.5, "source": src}, "interval_s"),
        ({"name": "x", "source": src}, "cron"),
        ({"name": "x", "cron": "* * * * *", "interval_s": 60, "source": src}, "cron"),
        ({"name": "x", "interval_s": 60, "source": {}}, "source"),
        ({"name": "x", "interval_s": 60, "source": {"folder": str(tmp_path)}}, "source.folder"),
        ({"name": "x", "interval_s": 60, "source": {"folder": f"{folder}/../.."}}, "source.folder"),
        ({"name": "x", "interval_s": 60, "source": {"folder": str(folder), "glob": "../*.mp4"}}, "glob"),
        ({"name": "x", "interval_s": 60, "source": {"folder": str(folder), "glob": "/etc/*"}}, "glob"),
        ({"name": "x", "interval_s": 60, "source": {"folder": str(folder), "depth": 3}}, "source.depth"),
        ({"name": "x", "interval_s": 60, "source": src, "options": {"fps": 99}}, "options.fps"),
        ({"name": "x", "interval_s": 60, "source": src, "colour": 1}, "colour"),
        ({"name": "", "interval_s": 60, "source": src}, "name"),
    ]
    with api.http() as http:
        for body, field in cases:
            resp = http.post("/v1/schedules", json=body)
            assert resp.status_code == 422, (body, resp.text)
            assert error_of(resp)["field"] == field, (body, resp.json())
        sid = http.post("/v1/schedules", json={"name": "ok", "interval_s": 60, "source": src}).json()["id"]
        bad = http.patch(f"/v1/schedules/{sid}", json={"cron": "nope nope"})
        assert bad.status_code == 422 and error_of(bad)["field"] == "cron"
        assert http.patch(f"/v1/schedules/{sid}", json={"bogus": 1}).status_code == 422
        assert http.get(f"/v1/schedules/{sid}").json()["interval_s"] == 60  # unchanged by the refused edits
        assert http.delete(f"/v1/schedules/{sid}").status_code == 204


# -- timing maths ---------------------------------------------------------------------------------
def test_cron_reads_its_timezone_and_seconds() -> None:
    berlin = FsSchedule("0 9 * * *", "Europe/Berlin")
    assert berlin.next_after(datetime(2026, 1, 10, tzinfo=UTC)) == datetime(2026, 1, 10, 8, tzinfo=UTC)
    assert berlin.next_after(datetime(2026, 7, 10, tzinfo=UTC)) == datetime(2026, 7, 10, 7, tzinfo=UTC)
    every3 = FsSchedule("*/3 * * * * *")
    t = datetime.now(UTC).replace(microsecond=0)
    assert (every3.next_after(t) - t).total_seconds() in (1, 2, 3)
    assert FsSchedule(interval_s=90).next_after(t) == t + timedelta(seconds=90)
    with pytest.raises(PlanError):
        FsSchedule("* * * * *", interval_s=5)


def test_missed_runs_are_due_once() -> None:
    sched = FsSchedule(interval_s=60)
    hours_ago = datetime.now(UTC) - timedelta(hours=3)  # 180 runs missed
    due, wait = sched.is_due(hours_ago)
    assert due and 59 <= wait <= 60  # fire now; the next run is a full period from now, not a backlog
    due, wait = sched.is_due(datetime.now(UTC))  # just fired
    assert not due and 59 <= wait <= 60


# -- fire --------------------------------------------------------------------------------------------
def _clip(path: Path, src: Path, age_s: float = 60) -> Path:
    shutil.copy(src, path)
    old = time.time() - age_s
    os.utime(path, (old, old))
    return path


def _race(settings: Settings, schedule_id: str, threads: int = 4) -> tuple[list[str], list[FireResult]]:
    """Run ``fire`` on ``threads`` threads released at the same moment; returns (queued ids, results)."""
    queued: list[str] = []
    results: list[FireResult] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def enqueue(job_id: str) -> None:
        with lock:
            queued.append(job_id)

    def run() -> None:
        barrier.wait()
        result = fire(settings, schedule_id, uuid.uuid4().hex, enqueue)
        with lock:
            results.append(result)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(60)
    return queued, results


def _schedule(api: Api, folder: Path, **kw: object) -> str:
    values: dict[str, object] = {
        "name": "t", "enabled": True, "cron": None, "timezone": "UTC", "interval_s": 60.0, "source_kind": "folder",
        "source": str(folder), "glob": "*.mp4", "settle_s": 5.0, "max_files_per_run": 100,
        "options": {"segment_seconds": 2, "fps": 2}, "webhook_url": None,
    }  # fmt: skip
    values.update(kw)
    return ScheduleStore(api.store().engine).create(**values).id


def test_fire_makes_one_job_per_new_file_even_when_run_twice_at_once(
    mirror_app: tuple[Api, redis.Redis], clip_12s: Path, tmp_path: Path
) -> None:
    api, _ = mirror_app
    folder = api.media / "watch"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        _clip(folder / name, clip_12s)
    _clip(folder / "fresh.mp4", clip_12s, age_s=0)  # still settling
    (folder / "notes.txt").write_text("x")
    outside = _clip(tmp_path / "outside.mp4", clip_12s)
    (folder / "escape.mp4").symlink_to(outside)
    os.mkfifo(folder / "pipe.mp4")
    sid = _schedule(api, folder)
    queued, results = _race(api.settings, sid)
    store = api.store()
    jobs = store.list_jobs(schedule_id=sid, limit=100)
    assert sorted(j.source_name for j in jobs) == ["a.mp4", "b.mp4", "c.mp4"]
    assert sorted(queued) == sorted(j.id for j in jobs)
    assert sum(len(r.jobs) for r in results) == 3 and all(r.error is None for r in results)

    enqueue = queued.append
    assert fire(api.settings, sid, uuid.uuid4().hex, enqueue).jobs == ()  # nothing new
    os.utime(folder / "fresh.mp4", (time.time() - 60, time.time() - 60))  # settled now
    with (folder / "a.mp4").open("ab") as fh:  # a rewrite: new size and mtime -> a new file version
        fh.write(b"\0")
    os.utime(folder / "a.mp4", (time.time() - 30, time.time() - 30))
    again = fire(api.settings, sid, uuid.uuid4().hex, enqueue)
    assert sorted(store.get_job(j).source_name for j in again.jobs) == ["a.mp4", "fresh.mp4"]
    sched = ScheduleStore(store.engine).get(sid)
    assert sched.run_count == 6 and sched.jobs_created == 5 and sched.last_run_at is not None


def test_fire_respects_the_per_run_cap_and_reports_a_vanished_folder(
    mirror_app: tuple[Api, redis.Redis], clip_12s: Path
) -> None:
    api, _ = mirror_app
    folder = api.media / "capped"
    folder.mkdir()
    for i in range(3):
        _clip(folder / f"{i}.mp4", clip_12s)
    sid = _schedule(api, folder, max_files_per_run=2)
    first = fire(api.settings, sid, "t1", lambda _: None)
    second = fire(api.settings, sid, "t2", lambda _: None)
    assert (len(first.jobs), len(second.jobs)) == (2, 1)
    shutil.rmtree(folder)
    gone = fire(api.settings, sid, "t3", lambda _: None)
    assert gone.jobs == () and gone.error is not None and "no such folder" in gone.error
    assert ScheduleStore(api.store().engine).get(sid).last_error == gone.error


def test_url_schedule_makes_one_job_per_run_token(mirror_app: tuple[Api, redis.Redis]) -> None:
    api, _ = mirror_app
    sid = _schedule(api, api.media, source_kind="url", source="http://127.0.0.1:9/v.mp4")
    settings = api.settings.model_copy(
        update={"scheduler": api.settings.scheduler.model_copy(update={"allow_private_urls": ["127.0.0.1"]})}
    )
    once = fire(settings, sid, "run-1", lambda _: None)
    redelivered = fire(settings, sid, "run-1", lambda _: None)
    later = fire(settings, sid, "run-2", lambda _: None)
    assert len(once.jobs) == 1 and redelivered.jobs == () and len(later.jobs) == 1
    refused = fire(api.settings, sid, "run-3", lambda _: None)  # without the allow-list entry
    assert refused.jobs == () and "loopback" in str(refused.error)


def test_fire_is_race_free_on_postgresql(tmp_path: Path, clip_12s: Path) -> None:
    from tests.integration.api_fixtures import api_settings
    from tests.integration.celery_fixtures import pg_database
    from worker.adapters.stores.sql import SqlResultStore

    with pg_database() as url:
        settings = api_settings(tmp_path, database_url=url)
        store = SqlResultStore(url)
        try:
            folder = settings.allowed_roots[0]
            for name in ("a.mp4", "b.mp4"):
                _clip(folder / name, clip_12s)
            values = {
                "name": "pg", "enabled": True, "cron": None, "timezone": "UTC", "interval_s": 60.0,
                "source_kind": "folder", "source": str(folder), "glob": "*.mp4", "settle_s": 0.0,
                "max_files_per_run": 100, "options": {}, "webhook_url": None,
            }  # fmt: skip
            sid = ScheduleStore(store.engine).create(**values).id
            queued, results = _race(settings, sid, threads=6)
            jobs = store.list_jobs(schedule_id=sid)
            assert sorted(j.source_name for j in jobs) == ["a.mp4", "b.mp4"]
            assert sorted(queued) == sorted(j.id for j in jobs) and all(r.error is None for r in results)
        finally:
            store.close()
            from worker.bootstrap import store_for

            store_for(url).close()


# -- pure helpers ----------------------------------------------------------------------------------
def test_new_files_and_globs() -> None:
    now = 10**18
    files = [FileFacts(f"/m/{i}.mp4", 10, now - 10 * 10**9) for i in range(5)]
    settling = FileFacts("/m/new.mp4", 10, now - 10**9)
    empty = FileFacts("/m/empty.mp4", 0, now - 10**12)
    seen = {files[0].key}
    got = list(new_files([*files, settling, empty], seen, now_ns=now, settle_s=5, limit=3))
    assert got == files[1:4]
    assert FileFacts("/m/0.mp4", 11, files[0].mtime_ns).key != files[0].key
    assert check_glob("**/*.mp4") == "**/*.mp4"
    for bad in ("", "../x", "a/../../b", "/abs/*", "~/x", "a\x00b", "x" * 201):
        with pytest.raises(PlanError):
            check_glob(bad)


def test_signatures() -> None:
    body = b'{"a":1}'
    headers = signing.sign("s3cret", 1_000_000, body)
    assert signing.verify("s3cret", headers, body, now=1_000_100) is None
    assert signing.verify("s3cret", {k.lower(): v for k, v in headers.items()}, body, now=1_000_000) is None
    assert signing.verify("other", headers, body, now=1_000_000) == "signature does not match the body"
    assert signing.verify("s3cret", headers, body + b" ", now=1_000_000) is not None
    assert "timestamp" in str(signing.verify("s3cret", headers, body, now=1_000_000 + 301))
    assert "timestamp" in str(signing.verify("s3cret", {}, body, now=1_000_000))
