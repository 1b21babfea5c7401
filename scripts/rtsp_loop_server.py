#!/usr/bin/python3
"""A real RTSP server on loopback serving a video file in a loop (for tests, demos and benchmarks).

GStreamer's RTSP server (Debian: python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good/bad)
fed by ``ffmpeg -re -stream_loop -1 … -f rtp`` on a loopback UDP port. Run with Debian's own
/usr/bin/python3 (the venv has no ``gi``)::

    /usr/bin/python3 scripts/rtsp_loop_server.py VIDEO --port 8554 --path /cam1

Prints ``READY rtsp://127.0.0.1:8554/cam1`` once listening. SIGTERM stops the server and its ffmpeg.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", default="/cam")
    ap.add_argument("--fps", type=int, default=10)
    args = ap.parse_args()
    Gst.init(None)
    rtp_port = free_udp_port()
    feeder = subprocess.Popen(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            args.video,
            "-an",
            "-r",
            str(args.fps),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            str(args.fps),
            "-pix_fmt",
            "yuv420p",
            "-x264-params",
            "repeat-headers=1",
            "-f",
            "rtp",
            f"rtp://127.0.0.1:{rtp_port}?pkt_size=1200",
        ],
        stdout=subprocess.DEVNULL,  # ffmpeg prints the SDP there
    )
    caps = "application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96"
    launch = (
        f'( udpsrc address=127.0.0.1 port={rtp_port} caps="{caps}" ! rtpjitterbuffer mode=synced latency=200 '
        "! rtph264depay ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        feeder.terminate()
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()

    def stop(*_: object) -> bool:
        loop.quit()
        return False

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, stop)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, stop)
    GLib.timeout_add(500, lambda: feeder.poll() is None or stop())
    print(f"READY rtsp://127.0.0.1:{args.port}{args.path}", flush=True)
    try:
        loop.run()
    finally:
        feeder.terminate()
        try:
            feeder.wait(5)
        except subprocess.TimeoutExpired:
            feeder.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
