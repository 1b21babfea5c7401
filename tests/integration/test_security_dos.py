"""Hostile denial-of-service cases against the real app on uvicorn (issue 14, items 1-5).

Each case is what a hostile client tried: a /readyz herd, plans that never end or explode, bodies sent
before (or instead of) a key, slow bodies, and URL servers that stall or drip. Every one must end in
a clear 4xx/503 within a deadline while the rest of the API keeps answering.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from scheduler.main import create_app
from tests.integration.api_fixtures import (
    RecordingEnqueuer,
    api_settings,
    client,
    error_of,
    file_server,
    running_api,
    serve,
)

pytestmark = pytest.mark.security

KEY = "dos-test-key"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, clip_12s: Path) -> Iterator[tuple[str, Path]]:
    """An API with a key and tight body deadlines; yields (base URL, media folder)."""
    with running_api(
        tmp_path_factory.mktemp("dos"),
        api_keys=[KEY],
        security={"body_timeout_s": 1.0, "min_upload_bytes_per_s": 1_000_000},
        limits={"max_frames_per_job": 30, "max_segments_per_job": 6},
    ) as api:
        shutil.copy(clip_12s, api.media / "clip.mp4")
        yield api.base, api.media


def _raw(base: str, head: str, body: bytes = b"", wait_s: float = 5.0) -> tuple[str, float]:
    """Send raw request bytes, return (status line, seconds until the first response byte)."""
    host, port = base.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = sock.recv(200)
    return data.split(b"\r\n", 1)[0].decode(), time.monotonic() - started


def _call(base: str, method: str, path: str, body: object) -> httpx.Response:
    with client(base, timeout=15) as http:
        return http.request(method, path, json=body)


# -- 1. /readyz herd -----------------------------------------------------------------------------
@dataclass
class StuckEnqueuer(RecordingEnqueuer):
    """A Celery ping that hangs (kombu's Resource.acquire): counts probes and the most in flight."""

    release: threading.Event = field(default_factory=threading.Event)
    calls: int = 0
    inflight: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def workers(self, timeout_s: float = 1.0) -> int:
        with self.lock:
            self.calls += 1
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
        self.release.wait(30)
        with self.lock:
            self.inflight -= 1
        return 1


def test_readyz_herd_never_wedges_the_api(tmp_path: Path) -> None:
    settings = api_settings(tmp_path, security={"readiness_timeout_s": 1.0, "readiness_cache_s": 0.5})
    stuck = StuckEnqueuer()
    with serve(create_app(settings, enqueuer=stuck)) as base:
        try:
            with concurrent.futures.ThreadPoolExecutor(60) as pool:
                herd = [pool.submit(_call, base, "GET", "/readyz", None) for _ in range(60)]
                time.sleep(0.3)
                with client(base, timeout=5) as http:
                    started = time.monotonic()
                    assert http.get("/healthz").status_code == 200
                    assert http.get("/v1/jobs").status_code == 200, "sync routes still have threads"
                    assert time.monotonic() - started < 3
                answers = [f.result(timeout=15) for f in herd]
            assert {r.status_code for r in answers} == {503}
            assert all(r.json()["checks"].get("timeout") for r in answers)
            assert stuck.peak == 1 and stuck.calls == 1, "one probe in flight, however many ask"
        finally:
            stuck.release.set()
        with client(base) as http:
            deadline = time.monotonic() + 10
            while (resp := http.get("/readyz")).status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert resp.status_code == 200 and resp.json()["checks"]["workers"] == 1


# -- 2. plans that never end, 3. plans over the caps -----------------------------------------------
NEVER_ENDING = [(1, 0.9996), (1, 0.95), (1, 0.999999), (0.05, 0), (1e-9, 0), (3600, 3599.99), (2, 1.95)]


@pytest.mark.parametrize(("segment", "overlap"), NEVER_ENDING)
def test_overlap_near_segment_is_refused_fast_json(keyed: tuple[str, Path], segment: float, overlap: float) -> None:
    base, media = keyed
    body = {"path": str(media / "clip.mp4"), "dry_run": True, "segment_seconds": segment, "overlap_seconds": overlap}
    started = time.monotonic()
    with client(base, KEY, timeout=10) as http:
        resp = http.post("/v1/jobs", json=body)
        assert resp.status_code == 422, resp.text
        assert time.monotonic() - started < 5
        assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize(("segment", "overlap"), NEVER_ENDING[:3])
def test_overlap_near_segment_is_refused_fast_upload(keyed: tuple[str, Path], segment: float, overlap: float) -> None:
    base, media = keyed
    options = json.dumps({"segment_seconds": segment, "overlap_seconds": overlap, "dry_run": True})
    started = time.monotonic()
    with client(base, KEY, timeout=10) as http:
        resp = http.post("/v1/jobs", files={"file": ("c.mp4", (media / "clip.mp4").read_bytes())},
                         data={"options": options})  # fmt: skip
    assert resp.status_code == 422 and error_of(resp)["field"] in ("options.overlap_seconds", "options")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("options", "word"),
    [
        # 12 s at 2 fps is 24 frames, but 3 s segments every 2 s sample 6 x 6 = 36 > 30
        ({"fps": 2, "segment_seconds": 3, "overlap_seconds": 1}, "frames"),
        ({"fps": 4, "segment_seconds": 1, "overlap_seconds": 0.9}, "segments"),  # 111 segments
        ({"fps": 2, "segment_seconds": 2, "overlap_seconds": 1}, "segments"),  # 11 segments > 6
        ({"fps": 4, "segment_seconds": 1, "overlap_seconds": 0.5}, "segments"),
    ],
)
def test_caps_count_what_the_plan_makes(keyed: tuple[str, Path], options: dict[str, float], word: str) -> None:
    base, media = keyed
    with client(base, KEY) as http:
        resp = http.post("/v1/jobs", json={"path": str(media / "clip.mp4"), "dry_run": True, **options})
    assert resp.status_code == 422, resp.text
    assert word in error_of(resp)["message"]


def test_a_plan_within_the_caps_is_estimated(keyed: tuple[str, Path]) -> None:
    base, media = keyed
    with client(base, KEY) as http:
        resp = http.post("/v1/jobs", json={"path": str(media / "clip.mp4"), "dry_run": True, "fps": 2,
                                           "segment_seconds": 2})  # fmt: skip
    assert resp.status_code == 200, resp.text
    est = resp.json()["estimate"]
    assert est["segments"] <= 6 and est["frames"] <= 30


# -- 4. bodies: auth first, capped, on time --------------------------------------------------------
HUGE = 300 * 1024 * 1024


@pytest.mark.parametrize(
    ("method", "path", "ctype"),
    [
        ("POST", "/v1/schedules", "application/json"),
        ("PATCH", "/v1/schedules/0123456789abcdef0123456789abcdef", "application/json"),
        ("POST", "/v1/jobs", "application/json"),
        ("POST", "/v1/jobs", "multipart/form-data; boundary=x"),
        ("DELETE", "/v1/jobs/0123456789abcdef0123456789abcdef", "application/json"),
        ("POST", "/v1/jobs/0123456789abcdef0123456789abcdef/cancel", "text/plain"),
    ],
)
@pytest.mark.parametrize("auth", ["", "Authorization: Bearer wrong\n"])
def test_no_key_no_body_read(keyed: tuple[str, Path], method: str, path: str, ctype: str, auth: str) -> None:
    base, _ = keyed
    head = f"{method} {path} HTTP/1.1\nHost: 127.0.0.1\n{auth}Content-Type: {ctype}\nContent-Length: {HUGE}\n"
    status, took = _raw(base, head)  # the body is never sent: the answer must not wait for it
    assert status.startswith("HTTP/1.1 401"), status
    assert took < 3


@pytest.mark.parametrize(
    ("path", "ctype", "declared"),
    [
        ("/v1/schedules", "application/json", True),
        ("/v1/schedules", "application/json", False),
        ("/v1/schedules", "multipart/form-data; boundary=x", False),
        ("/v1/jobs", "application/json", False),
    ],
)
def test_every_body_is_capped(keyed: tuple[str, Path], path: str, ctype: str, declared: bool) -> None:
    base, _ = keyed
    body = b"x" * (2 * 1024 * 1024)
    headers = {"Content-Type": ctype}

    def chunks() -> Iterator[bytes]:
        yield from (body[i : i + 65536] for i in range(0, len(body), 65536))

    with client(base, KEY) as http:
        resp = http.post(path, content=body if declared else chunks(), headers=headers)
    assert resp.status_code == 413, resp.text


@pytest.mark.parametrize("drip", [False, True])
def test_slow_bodies_time_out(keyed: tuple[str, Path], drip: bool) -> None:
    base, _ = keyed
    host, port = base.removeprefix("http://").split(":")
    head = f"POST /v1/schedules HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
    head += "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=8) as sock:
        sock.sendall(head.encode())
        sock.settimeout(0.25 if drip else 8)
        data = b""
        while not data and time.monotonic() - started < 8:
            if drip:
                sock.sendall(b" ")
            try:
                data = sock.recv(200)
            except TimeoutError:
                continue
    assert data.startswith(b"HTTP/1.1 408"), data
    assert time.monotonic() - started < 4, "body_timeout_s is 1 s"


# -- 5. URL servers that stall or drip ----------------------------------------------------------
class SlowServer:
    """A raw HTTP server on 127.0.0.1: ``stall`` (never answers), ``drip`` (1 byte / 0.1 s body), or
    ``drip-full`` (a fast 64 KiB Range answer for the preflight, a drip for the full download)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            request = conn.recv(65536)
            head = b"\x00\x00\x00\x18ftypisom"  # what sniff() takes for MP4
            if self.mode == "drip-full" and b"range:" in request.lower():
                payload = head + b"\x00" * (65536 - len(head))
                conn.sendall(b"HTTP/1.1 206 Partial\r\nContent-Length: 65536\r\n\r\n" + payload)
                return
            if self.mode == "stall":
                self.stop.wait(20)
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + head)
            while not self.stop.wait(0.1):
                try:
                    conn.sendall(b"\x00")
                except OSError:
                    return

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v.mp4?X-Signature=SECRET"

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture(scope="module")
def url_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_api(
        tmp_path_factory.mktemp("urls"),
        scheduler={"allow_private_urls": ["127.0.0.1"]},
        security={"url_check_timeout_s": 1.5, "max_url_checks": 2},
        limits={"download_timeout_s": 1.5},
    ) as api:
        yield api.base


@pytest.mark.parametrize("mode", ["stall", "drip"])
def test_url_preflight_has_a_wall_clock_deadline(url_api: str, mode: str) -> None:
    server = SlowServer(mode)
    try:
        started = time.monotonic()
        with client(url_api, timeout=15) as http:
            resp = http.post("/v1/jobs", json={"url": server.url()})
        assert resp.status_code == 422 and "in time" in error_of(resp)["message"], resp.text
        assert time.monotonic() - started < 4
    finally:
        server.close()


def test_download_drip_hits_the_deadline_and_is_redacted(url_api: str) -> None:
    server = SlowServer("drip-full")
    try:
        started = time.monotonic()
        with client(url_api, timeout=15) as http:
            resp = http.post("/v1/jobs", json={"url": server.url(), "dry_run": True})
        assert resp.status_code == 422 and "time limit" in error_of(resp)["message"], resp.text
        assert time.monotonic() - started < 5
        assert "SECRET" not in resp.text
    finally:
        server.close()


def test_url_checks_are_bounded_and_the_api_stays_up(url_api: str) -> None:
    server = SlowServer("stall")
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            submits = [pool.submit(_call, url_api, "POST", "/v1/jobs", {"url": server.url()}) for _ in range(8)]
            time.sleep(0.3)
            with client(url_api, timeout=3) as http:
                assert http.get("/v1/jobs").status_code == 200
            codes = sorted(f.result(timeout=15).status_code for f in submits)
        assert codes.count(503) >= 4 and set(codes) <= {422, 503}, codes
    finally:
        server.close()


def test_healthz_is_not_behind_the_thread_pool(url_api: str) -> None:
    with httpx.Client(base_url=url_api, timeout=2) as http:
        assert http.get("/healthz").json() == {"status": "ok"}


def test_url_fetches_go_to_the_checked_address(url_api: str, clip_12s: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name is resolved once, checked, and the connection goes to that address (the
    HTTP client never resolves it again; this name does not resolve at all outside the check)."""
    import ipaddress

    import worker.sources

    real = worker.sources.resolve_host

    def resolve(host: str, port: int) -> list[worker.sources.IpAddress]:
        return [ipaddress.ip_address("127.0.0.1")] if host == "rebind.invalid" else real(host, port)

    monkeypatch.setattr(worker.sources, "resolve_host", resolve)
    with file_server(clip_12s) as server:
        with client(url_api, timeout=30) as http:
            resp = http.post("/v1/jobs", json={"url": f"http://rebind.invalid:{server.port}/v.mp4", "dry_run": True})
        assert resp.status_code == 200, resp.text
        assert server.hits and {h.headers.get("Host") for h in server.hits} == {f"rebind.invalid:{server.port}"}
