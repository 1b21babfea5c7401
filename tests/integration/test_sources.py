"""Source rules: paths inside allowed roots only; URLs only to public addresses, on every redirect hop."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from worker.errors import SourceError
from worker.sources import check_url, download, resolve_local


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "media"
    root.mkdir()
    (root / "ok.mp4").write_bytes(b"x" * 10)
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"y")
    return root, outside


def test_path_inside_root(roots: tuple[Path, Path]) -> None:
    root, _ = roots
    assert resolve_local(str(root / "ok.mp4"), [root]) == (root / "ok.mp4").resolve()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda root, out: str(out), "outside the allowed folders"),
        (lambda root, out: str(root / ".." / out.name), "'..'"),
        (lambda root, out: str(root / "ok.mp4") + "\x00.txt", "NUL"),
        (lambda root, out: str(root / ("a" * 5000)), "characters"),
        (lambda root, out: str(root / ("a" * 300)), "no such file|cannot be resolved"),
        (lambda root, out: "/dev/zero", "outside"),
        (lambda root, out: str(root), "not a regular file"),
        (lambda root, out: str(root / "link.mp4"), "outside"),
        (lambda root, out: str(root / "fifo.mp4"), "not a regular file"),
        (lambda root, out: str(root / "ünïcødé-missing.mp4"), "no such file"),
    ],
)
def test_path_refusals(roots: tuple[Path, Path], build: object, message: str) -> None:
    root, outside = roots
    (root / "link.mp4").symlink_to(outside)
    os.mkfifo(root / "fifo.mp4")
    with pytest.raises(SourceError, match=message):
        resolve_local(build(root, outside), [root])  # type: ignore[operator]


def test_no_roots_configured_refuses(roots: tuple[Path, Path]) -> None:
    with pytest.raises(SourceError, match="FRAMESCRIBE_ALLOWED_ROOTS"):
        resolve_local(str(roots[0] / "ok.mp4"), [])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/a.mp4", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http://127.0.0.1/a.mp4", "loopback"),
        ("http://localhost:8080/a.mp4", "loopback"),
        ("http://[::1]/a.mp4", "loopback"),
        ("http://[::ffff:127.0.0.1]/a.mp4", "loopback"),
        ("http://10.1.2.3/a.mp4", "private"),
        ("http://192.168.0.10/a.mp4", "private"),
        ("http://172.16.5.4/a.mp4", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://metadata.google.internal/", "metadata"),
        ("http://0.0.0.0/", "reserved|private"),
        ("http://224.0.0.1/", "multicast"),
        ("http://user:pw@example.com/", "credentials"),
        ("http:///nohost", "no host"),
        ("http://example.com:99999/", "port"),
    ],
)
def test_url_refusals(url: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        check_url(url)


def test_allow_list_by_cidr_and_host() -> None:
    check_url("http://127.0.0.1:9/a.mp4", allow=["127.0.0.0/8"])
    check_url("http://localhost:9/a.mp4", allow=["localhost"])


class _Handler(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        return

    def do_GET(self) -> None:
        _Handler.hits.append(self.path)
        port = self.server.server_address[1]
        if self.path == "/ok.mp4":
            body = b"\x00\x00\x00\x18ftypmp42" + b"v" * 1000
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/endless":
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(100_000):
                    self.wfile.write(b"z" * 65536)
            except OSError:
                return
        elif self.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"a")
            self.wfile.flush()
            time.sleep(3)
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
        elif self.path == "/to-loopback-ip":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{port}/ok.mp4")
            self.end_headers()
        elif self.path == "/canary":
            self.send_response(200)
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.hits = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://localhost:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_ok(server: str, tmp_path: Path) -> None:
    path = download(server + "/ok.mp4", tmp_path, max_bytes=10_000, timeout_s=10, allow=["localhost"])
    assert path.name == "ok.mp4" and path.stat().st_size == 1012
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".download-")]


@pytest.mark.parametrize(
    ("path", "message", "timeout"),
    [
        ("/endless", "exceeded the limit", 10.0),
        ("/stall", "timed out|time limit", 1.0),
        ("/loop", "redirects", 10.0),
        ("/to-loopback-ip", "loopback", 10.0),
        ("/missing", "HTTP 404", 10.0),
    ],
)
def test_download_refusals_leave_no_file(server: str, tmp_path: Path, path: str, message: str, timeout: float) -> None:
    with pytest.raises(SourceError, match=message):
        download(server + path, tmp_path, max_bytes=1_000_000, timeout_s=timeout, allow=["localhost"])
    assert list(tmp_path.iterdir()) == []


def test_refused_url_never_contacts_the_server(server: str, tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        download(server + "/canary", tmp_path, max_bytes=100, timeout_s=5)  # no allow-list: loopback refused
    assert _Handler.hits == []
