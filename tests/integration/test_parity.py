"""Parity: the same scenarios through every entry point end in the same states, rows, summaries and
webhook deliveries, because every entry point calls the one job service (``worker.service.jobs``).

Entry points: ``cli`` (``framescribe run`` / ``cancel`` / ``retry --inline`` as subprocesses),
``inline`` (the REST API with the in-process enqueuer), ``celery`` (the REST API with two real
``celery worker`` processes). Clip: ``clip_12s`` in 2 s segments at 2 fps -> 6 segments, local describer.
Mid-run moments use failpoints armed for any job (``*.<index>.<point>``, see worker/failpoints.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scheduler.main import create_app
from tests.fakes.dashscope_server import Behavior, FakeDashScope
from tests.integration.api_fixtures import (
    API_DB,
    API_REDIS,
    WEBHOOK_SECRET,
    WebhookReceiver,
    api_settings,
    client,
    file_server,
    serve,
    wait_for,
)
from tests.integration.celery_fixtures import REPO, cluster
from worker.adapters.stores.schedules import ScheduleStore
from worker.adapters.stores.sql import SqlResultStore
from worker.config import Settings
from worker.core.models import Job

pytestmark = pytest.mark.services
OPTS = {"segment_seconds": 2, "fps": 2}
N = 6
TERMINAL = ("done", "partial", "failed", "cancelled")
ENTRIES = ("cli", "inline", "celery")


@dataclass
class Entry:
    name: str
    settings: Settings
    store: SqlResultStore
    media: Path
    failpoints: Path
    base: str = ""
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. the DashScope fake (``paid``)

    # -- driving --------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMESCRIBE_", "DASHSCOPE_"))}
        env.update(
            FRAMESCRIBE_DATA_DIR=str(self.settings.data_dir),
            FRAMESCRIBE_DATABASE_URL=self.settings.resolved_database_url,
            FRAMESCRIBE_BROKER_URL=self.settings.broker_url,
            FRAMESCRIBE_ALLOWED_ROOTS=json.dumps([str(self.media)]),
            FRAMESCRIBE_DESCRIBER__KIND="local",
            FRAMESCRIBE_SCHEDULER__WEBHOOK_SECRET=WEBHOOK_SECRET,
            FRAMESCRIBE_SCHEDULER__ALLOW_PRIVATE_URLS='["127.0.0.1"]',
            FRAMESCRIBE_FAILPOINTS=str(self.failpoints),
            NO_PROXY="127.0.0.1,localhost",
            PYTHONPATH=str(REPO),
        )
        env.update(self.extra_env)
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, env=self.env(),
            timeout=300, cwd=REPO,
        )  # fmt: skip

    def submit(self, kind: str, opts: dict[str, Any], webhook: str | None = None, url: str = "") -> str:
        """Start a job from a ``path``, ``url`` or ``upload`` source; returns its id."""
        clip = self.media / "clip.mp4"
        if self.name == "cli":  # `framescribe run` describes a local file or a URL; an upload is a local file
            args = ["run", url if kind == "url" else str(clip)]
            for k, v in opts.items():
                args += [f"--{k.replace('_', '-')}", str(v)]
            if webhook:
                args += ["--webhook-url", webhook]
            proc = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env=self.env(), cwd=REPO,
            )  # fmt: skip
            self.procs.append(proc)
            assert proc.stdout is not None
            first = proc.stdout.readline().split()
            assert first[:1] == ["job"], (first, proc.stderr.read() if proc.stderr else "")
            return first[1]
        body: dict[str, Any] = {**opts, **({"webhook_url": webhook} if webhook else {})}
        with client(self.base, timeout=60) as http:
            if kind == "upload":
                files: dict[str, Any] = {
                    "file": ("clip.mp4", clip.read_bytes(), "video/mp4"),
                    "options": (None, json.dumps(body)),
                }
                resp = http.post("/v1/jobs", files=files, headers={"X-Framescribe-Client": "tests"})
            else:
                resp = http.post("/v1/jobs", json={**body, **({"url": url} if kind == "url" else {"path": str(clip)})})
        assert resp.status_code == 202, resp.text
        return str(resp.json()["id"])

    def cancel(self, job_id: str) -> None:
        if self.name == "cli":
            res = self.cli("cancel", job_id)
            assert res.returncode == 0, res.stderr
        else:
            with client(self.base) as http:
                resp = http.post(f"/v1/jobs/{job_id}/cancel")
                assert resp.status_code == 200, resp.text

    def retry(self, job_id: str) -> int:
        """Retry; returns 0 when accepted, else the HTTP status / exit code."""
        if self.name == "cli":
            return self.cli("retry", job_id, "--inline").returncode
        with client(self.base) as http:
            resp = http.post(f"/v1/jobs/{job_id}/retry")
            return 0 if resp.status_code == 202 else resp.status_code

    def arm(self, index: int, point: str, action: str) -> None:
        (self.failpoints / f"*.{index}.{point}").write_text(action, encoding="utf-8")

    def wait_held(self, index: int, point: str) -> None:
        wait_for((self.failpoints / f"*.{index}.{point}.held").exists, 60, f"segment {index} to reach {point}")

    def release(self, index: int, point: str) -> None:
        (self.failpoints / f"*.{index}.{point}.release").write_text("go", encoding="utf-8")

    # -- observing ------------------------------------------------------------------------------
    def wait(self, job_id: str) -> Job:
        def ended() -> Job | None:
            job = self.store.get_job(job_id)
            return job if job.state in TERMINAL and job.summary is not None else None

        job: Job = wait_for(ended, 120, f"job {job_id} to end on {self.name}")
        for proc in self.procs:
            proc.communicate(timeout=120)
        self.procs.clear()
        return job

    def rows(self, job_id: str) -> list[tuple[int, str]]:
        return [(r.index, r.state) for r in self.store.segment_rows(job_id)]

    def deliveries(self, job_id: str, want: int) -> list[tuple[int, bool]]:
        schedules = ScheduleStore(self.store.engine)

        def got() -> Any:
            items = schedules.deliveries(job_id)
            return items if len(items) >= want else None

        items = wait_for(got, 60, f"{want} webhook delivery(ies) of job {job_id}") if want else []
        return [(d.attempt, d.ok) for d in items]


@contextlib.contextmanager
def make_entries(
    tmp_path_factory: pytest.TempPathFactory, clip: Path, label: str, env: dict[str, str] | None = None,
    workers: int = 2, **overrides: Any,
) -> Iterator[dict[str, Entry]]:  # fmt: skip
    """The three entry points on their own stores; ``env`` (and ``overrides`` of the settings) configure
    all three alike: the CLI's and the Celery workers' environment, the in-process API's settings."""
    env = env or {}
    with ExitStack() as stack:
        made: dict[str, Entry] = {}
        for name in ENTRIES:
            tmp = tmp_path_factory.mktemp(f"{label}-{name}")
            settings = api_settings(tmp, scheduler={"allow_private_urls": ["127.0.0.1"]}, **overrides)
            media = settings.allowed_roots[0]
            shutil.copy(clip, media / "clip.mp4")
            failpoints = tmp / "failpoints"
            failpoints.mkdir()
            if name == "celery":
                cluster_env: dict[str, Any] = {
                    "FRAMESCRIBE_ALLOWED_ROOTS": json.dumps([str(media)]),
                    "FRAMESCRIBE_SCHEDULER__WEBHOOK_SECRET": WEBHOOK_SECRET,
                    "FRAMESCRIBE_SCHEDULER__ALLOW_PRIVATE_URLS": '["127.0.0.1"]',
                    **env,
                }
                c = stack.enter_context(
                    cluster(tmp, settings.resolved_database_url, broker_url=f"{API_REDIS}/{API_DB}",
                            workers=workers, **cluster_env)
                )  # fmt: skip
                settings = settings.model_copy(
                    update={"worker": c.settings.worker, "broker_url": c.settings.broker_url,
                            "data_dir": c.settings.data_dir}
                )  # fmt: skip
                failpoints = c.failpoints
            entry = Entry(name, settings, SqlResultStore(settings.resolved_database_url), media, failpoints)
            entry.extra_env = dict(env)
            if name == "inline":
                os.environ["FRAMESCRIBE_FAILPOINTS"] = str(failpoints)  # the runner thread reads it
                stack.callback(os.environ.pop, "FRAMESCRIBE_FAILPOINTS", None)
            if name != "cli":
                entry.base = stack.enter_context(serve(create_app(settings, inline=name == "inline")))
            made[name] = entry
        yield made


@pytest.fixture(scope="module")
def entries(tmp_path_factory: pytest.TempPathFactory, clip_12s: Path) -> Iterator[dict[str, Entry]]:
    with make_entries(tmp_path_factory, clip_12s, "parity") as made:
        yield made


@pytest.fixture(scope="module")
def http_clip(clip_12s: Path) -> Iterator[str]:
    with file_server(clip_12s) as server:
        yield server.url("/clip.mp4")


@pytest.mark.parametrize("entry_name", ENTRIES)
@pytest.mark.parametrize("kind", ["path", "url", "upload"])
def test_every_source_ends_done_with_one_webhook(
    entries: dict[str, Entry], entry_name: str, kind: str, http_clip: str
) -> None:
    e = entries[entry_name]
    with WebhookReceiver() as hook:
        job_id = e.submit(kind, OPTS, webhook=hook.url("/hook"), url=http_clip)
        job = e.wait(job_id)
        assert (job.state, job.error) == ("done", None)
        assert e.rows(job_id) == [(i, "done") for i in range(N)]
        assert job.summary is not None and job.summary["state"] == "done" and job.summary["segments_done"] == N
        assert e.deliveries(job_id, 1) == [(1, True)]
        payload = json.loads(hook.hits[0].body)
        assert payload["job"]["id"] == job_id and payload["job"]["state"] == "done"


@pytest.mark.parametrize("entry_name", ENTRIES)
def test_missing_api_key_fails_the_job_with_the_reason(entries: dict[str, Entry], entry_name: str) -> None:
    e = entries[entry_name]
    with WebhookReceiver() as hook:
        job_id = e.submit("path", {**OPTS, "describer": "dashscope"}, webhook=hook.url("/hook"))
        job = e.wait(job_id)
        assert job.state == "failed" and job.error is not None and "DASHSCOPE_API_KEY" in job.error
        assert e.rows(job_id) == []
        assert job.summary is not None and job.summary["state"] == "failed"
        assert e.deliveries(job_id, 1) == [(1, True)]
        assert json.loads(hook.hits[0].body)["job"]["state"] == "failed"


@pytest.mark.parametrize("entry_name", ENTRIES)
def test_retry_of_a_partial_job_runs_only_what_failed(entries: dict[str, Entry], entry_name: str) -> None:
    e = entries[entry_name]
    e.arm(3, "before_describe", "reject")
    job_id = e.submit("path", OPTS)
    job = e.wait(job_id)
    assert job.state == "partial"
    assert e.rows(job_id) == [(i, "failed" if i == 3 else "done") for i in range(N)]
    described = {r.index: r.description for r in e.store.segment_rows(job_id)}
    assert e.retry(job_id) == 0
    job = e.wait(job_id)
    assert (job.state, job.error) == ("done", None)
    assert e.rows(job_id) == [(i, "done") for i in range(N)]
    again = {r.index: r.description for r in e.store.segment_rows(job_id)}
    assert all(again[i] == described[i] for i in range(N) if i != 3)  # kept, not described again
    assert e.retry(job_id) != 0  # a done job has nothing to retry: refused on every entry point


@pytest.mark.parametrize("entry_name", ENTRIES)
def test_cancel_mid_run_summarises_at_once(entries: dict[str, Entry], entry_name: str) -> None:
    e = entries[entry_name]
    e.arm(2, "before_describe", "hold")
    with WebhookReceiver() as hook:
        webhook = hook.url("/hook")
        job_id = e.submit("path", OPTS, webhook=webhook)
        e.wait_held(2, "before_describe")
        e.cancel(job_id)
        job = e.store.get_job(job_id)
        assert job.state == "cancelled" and job.summary is not None  # finished by the cancel, not later
        e.release(2, "before_describe")
        job = e.wait(job_id)
        rows = dict(e.rows(job_id))
        assert job.state == "cancelled" and rows[2] == "cancelled"
        assert set(rows.values()) <= {"done", "cancelled"} and list(rows.values()).count("done") < N
        assert job.summary is not None and job.summary["segments_total"] == N
        if entry_name != "cli":  # the CLI's cancel queues the webhook for Celery workers (none here)
            assert e.deliveries(job_id, 1) == [(1, True)]


@pytest.mark.parametrize("entry_name", ENTRIES)
def test_budget_cap_before_the_run_is_refused_without_a_job(entries: dict[str, Entry], entry_name: str) -> None:
    """Over ``max_calls`` by the estimate: refused with the same reason before any job exists (no key needed:
    the estimate makes no call)."""
    e = entries[entry_name]
    before = {j.id for j in e.store.list_jobs(limit=1000)}
    opts = {**OPTS, "describer": "dashscope", "max_calls": 2}
    if entry_name == "cli":
        res = e.cli("run", str(e.media / "clip.mp4"), "--fps", "2", "--segment-seconds", "2", "--describer",
                    "dashscope", "--max-calls", "2")  # fmt: skip
        assert res.returncode == 1 and "Traceback" not in res.stderr
        message = res.stderr
    else:
        with client(e.base) as http:
            resp = http.post("/v1/jobs", json={**opts, "path": str(e.media / "clip.mp4")})
        assert resp.status_code == 422 and resp.json()["error"]["code"] == "budget_exceeded"
        message = resp.json()["error"]["message"]
    assert "the job needs 6 model calls, 4 more than the cap of 2" in message
    assert {j.id for j in e.store.list_jobs(limit=1000)} == before


# -- a budget cap during the run (DashScope, against the loopback fake) ---------------------------------
PAID_KEY = "sk-parity-budget"


@pytest.fixture(scope="module")
def paid_fake() -> Iterator[FakeDashScope]:
    old = os.environ.get("NO_PROXY")
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    with FakeDashScope() as server:
        yield server
    if old is None:
        os.environ.pop("NO_PROXY", None)
    else:
        os.environ["NO_PROXY"] = old


@pytest.fixture(scope="module")
def paid(
    tmp_path_factory: pytest.TempPathFactory, clip_12s: Path, paid_fake: FakeDashScope
) -> Iterator[dict[str, Entry]]:
    """The three entry points with a DashScope key for the fake, one call at a time (one Celery worker):
    which segment meets the cap is then the same on every path."""
    env = {
        "FRAMESCRIBE_DASHSCOPE__API_KEY": PAID_KEY,
        "FRAMESCRIBE_DASHSCOPE__BASE_URL": paid_fake.base_http_api_url,
        "FRAMESCRIBE_DASHSCOPE__BACKOFF_BASE_S": "0.05",
        "FRAMESCRIBE_DASHSCOPE__BACKOFF_MAX_S": "0.2",
        "FRAMESCRIBE_DESCRIBER__CONCURRENCY": "1",
        "FRAMESCRIBE_SAMPLING__CACHE_DESCRIPTIONS": "false",
    }
    ds = {"api_key": PAID_KEY, "base_url": paid_fake.base_http_api_url, "backoff_base_s": 0.05, "backoff_max_s": 0.2}
    with make_entries(
        tmp_path_factory, clip_12s, "paid", env, workers=1, dashscope=ds, describer={"concurrency": 1},
        sampling={"cache_descriptions": False},
    ) as made:  # fmt: skip
        yield made


@pytest.mark.parametrize("entry_name", ENTRIES)
def test_budget_cap_during_the_run_stops_every_entry_point_alike(
    paid: dict[str, Entry], paid_fake: FakeDashScope, entry_name: str
) -> None:
    """DashScope bills 6x the estimate (``video_bill_factor``): the estimate passes ``max_video_tokens``
    before the run, the first segment's bill spends it all, so segment 1 fails with the cap's reason before
    any request and the rest are cancelled — on every entry point, with the same rows and usage."""
    from worker import cli_estimate
    from worker.options import JobOptions

    e = paid[entry_name]
    paid_fake.reset()
    paid_fake.video_bill_factor = 6
    opts = {**OPTS, "describer": "dashscope"}
    est = cli_estimate.report(e.media / "clip.mp4", JobOptions.parse(opts), e.settings)["estimate"]
    assert est["segments"] == N and est["calls"] == N
    cap = est["video_tokens"]  # the estimate exactly: accepted before the run
    job_id = e.submit("path", {**opts, "max_video_tokens": cap})
    job = e.wait(job_id)
    assert job.state == "partial", (job.state, job.error)
    assert e.rows(job_id) == [(0, "done"), (1, "failed")] + [(i, "cancelled") for i in range(2, N)]
    failed = e.store.segment(job_id, 1)
    assert failed.error is not None and "video token cap" in failed.error and failed.http_attempts == 0
    bill, usage = paid_fake.billed_totals(), e.store.usage(job_id)
    assert bill["video_tokens"] == 6 * (cap // N) <= cap  # one segment, billed at 6x its estimate
    assert bill["calls"] == 2 and len(paid_fake.requests_of("generation")) == 2  # segment 0 and the summary
    assert (usage["video_tokens"], usage["input_tokens"], usage["output_tokens"]) == (
        bill["video_tokens"], bill["input_tokens"], bill["output_tokens"])  # fmt: skip
    assert usage["http_attempts"] == 2
    assert job.summary is not None and job.summary["segments_done"] == 1 and job.summary["state"] == "partial"


@pytest.fixture(scope="module")
def paid2(
    tmp_path_factory: pytest.TempPathFactory, clip_12s: Path, paid_fake: FakeDashScope
) -> Iterator[dict[str, Entry]]:
    """The three entry points with a DashScope key for the fake, two calls in flight: two Celery workers,
    two describer threads in process (the caps' reservations are shared through the store)."""
    env = {
        "FRAMESCRIBE_DASHSCOPE__API_KEY": PAID_KEY,
        "FRAMESCRIBE_DASHSCOPE__BASE_URL": paid_fake.base_http_api_url,
        "FRAMESCRIBE_DASHSCOPE__BACKOFF_BASE_S": "0.05",
        "FRAMESCRIBE_DASHSCOPE__BACKOFF_MAX_S": "0.2",
        "FRAMESCRIBE_DESCRIBER__CONCURRENCY": "2",
        "FRAMESCRIBE_SAMPLING__CACHE_DESCRIPTIONS": "false",
    }
    ds = {"api_key": PAID_KEY, "base_url": paid_fake.base_http_api_url, "backoff_base_s": 0.05, "backoff_max_s": 0.2}
    with make_entries(
        tmp_path_factory, clip_12s, "paid2", env, workers=2, dashscope=ds, describer={"concurrency": 2},
        sampling={"cache_descriptions": False},
    ) as made:  # fmt: skip
        yield made


@pytest.mark.parametrize("entry_name", ENTRIES)
def test_budget_cap_during_the_run_holds_with_two_calls_in_flight(
    paid2: dict[str, Entry], paid_fake: FakeDashScope, entry_name: str
) -> None:
    """Two calls in flight (two Celery workers): the first two replies are lost after the fake billed
    them, so the retries need more than the estimate the job was admitted with (``max_video_tokens`` = the
    estimate). Every entry point bills exactly the cap, no more: four segments done, the rest failed with
    the cap's reason or cancelled, stored = billed, the summary's request counted."""
    from worker import cli_estimate
    from worker.options import JobOptions

    e = paid2[entry_name]
    paid_fake.reset()
    opts = {**OPTS, "describer": "dashscope"}
    est = cli_estimate.report(e.media / "clip.mp4", JobOptions.parse(opts), e.settings)["estimate"]
    cap = est["video_tokens"]
    paid_fake.enqueue(Behavior(reset_after=True), Behavior(reset_after=True))
    job_id = e.submit("path", {**opts, "max_video_tokens": cap})
    job = e.wait(job_id)
    assert job.state == "partial", (job.state, job.error)
    states = [s for _, s in e.rows(job_id)]
    assert states.count("done") == N - 2 and states.count("failed") >= 1, states
    assert set(states) <= {"done", "failed", "cancelled"}
    failed = [e.store.segment(job_id, i) for i, s in e.rows(job_id) if s == "failed"]
    assert any("video token cap" in (r.error or "") for r in failed), [r.error for r in failed]
    bill, usage = paid_fake.billed_totals(), e.store.usage(job_id)
    assert bill["video_tokens"] == cap  # 4 described + 2 lost replies, each at its estimate: the cap, no more
    sent = len(paid_fake.requests_of("generation"))
    assert usage["http_attempts"] == sent == bill["calls"] == N + 1  # 6 segment requests and the summary
    assert (usage["video_tokens"], usage["input_tokens"]) == (bill["video_tokens"], bill["input_tokens"])
    assert usage["output_tokens"] <= bill["output_tokens"]  # a lost reply's output tokens cannot be known
    assert job.summary is not None and job.summary["segments_done"] == N - 2 and job.summary["state"] == "partial"
