"""Real live-stream servers on loopback for the camera tests: GStreamer's RTSP server (scripts/rtsp_loop_server.py,
run by Debian's /usr/bin/python3), ffmpeg's HLS muxer behind a loopback HTTP server, Mosquitto, and an MQTT
subscriber that records what was published. Faults: ``kill``/``start`` (restart), ``stall``/``resume``
(SIGSTOP/SIGCONT of the server process group).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"
MQTT_PORT = 1883


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answering(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def have_gst_rtsp() -> bool:
    if not (Path(SYSTEM_PYTHON).exists() and shutil.which("ffmpeg")):
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0


needs_rtsp = pytest.mark.skipif(not have_gst_rtsp(), reason="GStreamer RTSP server not installed (scripts/bootstrap)")


def make_clip(path: Path, *, seconds: float = 4, motion: bool = True, size: str = "320x240", fps: int = 10) -> Path:
    """A short H.264 clip: a moving test pattern, or a still frame (a quiet camera)."""
    src = f"testsrc2=size={size}:rate={fps}" if motion else f"color=c=gray:size={size}:rate={fps}"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src, "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


class RtspServer:
    """scripts/rtsp_loop_server.py serving ``video`` in a loop at rtsp://127.0.0.1:<port>/cam."""

    def __init__(self, video: Path, log: Path, port: int | None = None) -> None:
        self.video = video
        self.log = log
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self, timeout: float = 30) -> None:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, str(REPO / "scripts" / "rtsp_loop_server.py"), str(self.video),
                 "--port", str(self.port)],
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"RTSP server exited: {self.log.read_text(errors='replace')[-2000:]}")
            if answering(self.port):
                return
            time.sleep(0.1)
        raise AssertionError("RTSP server did not listen in time")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stall(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with _suppress():
                os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def _suppress() -> contextlib.suppress:
    return contextlib.suppress(ProcessLookupError)


class HlsServer:
    """ffmpeg's hls muxer writing a live playlist of 1 s segments, served by a loopback HTTP server."""

    def __init__(self, video: Path, folder: Path) -> None:
        self.video = video
        self.folder = folder
        self.port = free_port()
        self.ffmpeg: subprocess.Popen[bytes] | None = None
        self.httpd: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live.m3u8"

    def start(self, timeout: float = 30) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ffmpeg = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1",
             "-i", str(self.video), "-an", "-c:v", "libx264", "-preset", "ultrafast", "-g", "10",
             "-f", "hls", "-hls_time", "1", "-hls_list_size", "6", "-hls_flags", "delete_segments",
             str(self.folder / "live.m3u8")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        handler = functools.partial(_QuietHandler, directory=str(self.folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not (self.folder / "live.m3u8").exists():
            if time.monotonic() > deadline:
                raise AssertionError("no HLS playlist in time")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.ffmpeg is not None and self.ffmpeg.poll() is None:
            os.killpg(self.ffmpeg.pid, signal.SIGTERM)
            self.ffmpeg.wait(10)
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


def mosquitto_up() -> bool:
    return answering(MQTT_PORT)


def start_mosquitto(timeout: float = 10) -> None:
    if mosquitto_up():
        return
    subprocess.run(["mosquitto", "-d", "-c", "/etc/mosquitto/mosquitto.conf"], check=False, timeout=10)
    deadline = time.monotonic() + timeout
    while not mosquitto_up():
        if time.monotonic() > deadline:
            raise AssertionError("mosquitto did not start")
        time.sleep(0.1)


class Subscriber:
    """Records every message under ``framescribe/<camera>/#`` (QoS 1)."""

    def __init__(self, camera: str, port: int = MQTT_PORT) -> None:
        self.camera = camera
        self.port = port
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{camera}-{free_port()}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]  # paho annotates int, takes a float

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        client.subscribe(f"framescribe/{self.camera}/#", qos=1)
        self._ready.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload or b"{}"), bool(msg.retain)))

    def start(self) -> Subscriber:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        assert self._ready.wait(10), "subscriber did not connect"
        time.sleep(0.2)  # the SUBACK
        return self

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == f"framescribe/{self.camera}/{kind}"]

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
