"""Helpers for the REST API tests: the real app served by uvicorn on 127.0.0.1 (port 0) in a thread,
a recording enqueuer, and small loopback HTTP servers (canary, redirector, webhook receiver).

Redis DBs 4-6 belong to the API tests; every session uses its own queue name (and so its own RedBeat
key prefix, ``redbeat:<queue>:``).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from tests.fakes.ports import FakeEnqueuer
from worker.config import Settings, load_settings
from worker.errors import QueueUnavailable

API_REDIS = "redis://127.0.0.1:6379"
API_DB, BEAT_DB, SPARE_DB = 4, 5, 6
WEBHOOK_SECRET = "test-webhook-secret"


def api_settings(tmp: Path, **overrides: Any) -> Settings:
    """Settings on ``tmp``: SQLite store, local describer, media root ``tmp/media``, a unique queue."""
    media = tmp / "media"
    media.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {
        "data_dir": tmp / "data",
        "database_url": f"sqlite:///{tmp / 'api.db'}",
        "broker_url": f"{API_REDIS}/{API_DB}",
        "allowed_roots": [media],
        "describer": {"kind": "local"},
        "worker": {"queue": f"fs-api-{uuid.uuid4().hex[:10]}"},
        "scheduler": {"webhook_secret": WEBHOOK_SECRET, "max_upload_bytes": 8 * 1024 * 1024},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_settings(**base)


@dataclass
class RecordingEnqueuer(FakeEnqueuer):
    """Records what the API queues instead of sending it (for tests that need no worker); ``down``
    makes every publish fail as a broker that does not answer."""

    down: bool = False

    def enqueue_job(self, job_id: str) -> None:
        if self.down:
            raise QueueUnavailable("the job queue (Redis) is not reachable; try again shortly")
        super().enqueue_job(job_id)

    def broker_ok(self) -> bool:
        return not self.down

    def workers(self, timeout_s: float = 1.0) -> int:
        return 0 if self.down else 1


@dataclass
class Api:
    """A running app (RecordingEnqueuer, no workers) and what a test needs to look behind it."""

    base: str
    settings: Settings
    enqueuer: RecordingEnqueuer
    media: Path

    def http(self, key: str | None = None) -> httpx.Client:
        return client(self.base, key)

    def store(self) -> Any:
        from worker.bootstrap import store_for

        return store_for(self.settings.resolved_database_url)


@contextlib.contextmanager
def running_api(tmp: Path, mirror: Any = None, **overrides: Any) -> Iterator[Api]:
    from scheduler.main import create_app

    settings = api_settings(tmp, **overrides)
    enqueuer = RecordingEnqueuer()
    with serve(create_app(settings, enqueuer=enqueuer, mirror=mirror)) as base:
        yield Api(base, settings, enqueuer, settings.allowed_roots[0])


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1:<free port> in a thread; yields the base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def client(base: str, key: str | None = None, timeout: float = 30) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=base, headers=headers, timeout=timeout)


def error_of(resp: httpx.Response) -> dict[str, Any]:
    """The error object of a 4xx/5xx response (asserting the documented shape)."""
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "field"}, err
    assert isinstance(err["code"], str) and err["code"] and isinstance(err["message"], str) and err["message"]
    return dict(err)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# -- loopback HTTP servers --------------------------------------------------------------------
@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class LoopbackServer:
    """A tiny threaded HTTP server on ``host``:<free port>; ``respond(req) -> (status, headers, body)``."""

    def __init__(
        self, respond: Callable[[Recorded], tuple[int, dict[str, str], bytes]], host: str = "127.0.0.1"
    ) -> None:
        self.hits: list[Recorded] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Recorded(self.command, self.path, {k: v for k, v in self.headers.items()}, body)
                with outer.lock:
                    outer.hits.append(req)
                status, headers, payload = respond(req)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def canary() -> LoopbackServer:
    """Counts every hit; SSRF tests assert it saw none."""
    return LoopbackServer(lambda req: (200, {"Content-Type": "video/mp4"}, b"\x00\x00\x00\x18ftypisom" + b"\0" * 64))


def redirector(target: str, host: str) -> LoopbackServer:
    return LoopbackServer(lambda req: (302, {"Location": target}, b""), host=host)


def file_server(path: Path, host: str = "127.0.0.1") -> LoopbackServer:
    data = path.read_bytes()

    def respond(req: Recorded) -> tuple[int, dict[str, str], bytes]:
        rng = req.headers.get("Range") or req.headers.get("range")
        if rng and rng.startswith("bytes=0-"):
            end = min(len(data), int(rng.split("-", 1)[1]) + 1)
            return 206, {"Content-Type": "video/mp4", "Content-Range": f"bytes 0-{end - 1}/{len(data)}"}, data[:end]
        return 200, {"Content-Type": "video/mp4"}, data

    return LoopbackServer(respond, host=host)


class WebhookReceiver(LoopbackServer):
    """Answers the first ``fail_first`` POSTs with 503, then 204; records every delivery."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.count = 0
        self.lock = threading.Lock()

        def respond(req: Recorded) -> tuple[int, dict[str, str], bytes]:
            with self.lock:
                self.count += 1
                n = self.count
            return (503, {}, b"busy") if n <= self.fail_first else (204, {}, b"")

        super().__init__(respond)
