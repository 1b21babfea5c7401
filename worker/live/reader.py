"""Reading a live stream with PyAV: decoded frames with their PTS, deadlines on every blocking read.

``open_timeout_s`` bounds connecting, ``read_timeout_s`` bounds each read (FFmpeg's own I/O timeout
through ``av.open(timeout=...)``); a wall-clock watchdog additionally refuses a stream that delivers
no new frame for ``read_timeout_s`` (a server that freezes yet keeps the socket open).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import av

from worker.live.source import LiveSource


class StreamDropped(Exception):
    """The stream ended or failed; ``reason`` is one line for the status."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Decoded:
    pts_ms: int
    received_utc_ms: int
    frame: Any  # av.VideoFrame; ``image()`` converts it only when the frame is sampled

    def image(self) -> Any:
        return self.frame.to_ndarray(format="bgr24")


def _options(src: LiveSource, read_timeout_s: float) -> dict[str, str]:
    if src.kind == "rtsp":
        return {
            "rtsp_transport": "tcp",
            "timeout": str(int(read_timeout_s * 1e6)),
            "analyzeduration": "1000000",
            "probesize": "500000",
        }
    if src.kind == "hls":
        return {"live_start_index": "-1", "rw_timeout": str(int(read_timeout_s * 1e6)), "analyzeduration": "1000000"}
    return {}


def frames(
    src: LiveSource,
    *,
    open_timeout_s: float,
    read_timeout_s: float,
    utc_now: Callable[[], int],
) -> Iterator[Decoded]:
    """Decoded frames of one connection until it drops (raises ``StreamDropped``)."""
    try:
        container = av.open(
            src.url,
            options=_options(src, read_timeout_s),
            timeout=(open_timeout_s, read_timeout_s),
            format="v4l2" if src.kind == "device" else None,
        )
    except (av.FFmpegError, OSError) as exc:
        raise StreamDropped(f"cannot connect: {_one_line(exc)}") from None
    try:
        streams = container.streams.video
        if not streams:
            raise StreamDropped("the stream has no video")
        stream = streams[0]
        stream.thread_type = "AUTO"  # PyAV's default decoding garbles multi-slice frames from RTSP (checked)
        base = stream.time_base
        last_frame = time.monotonic()
        first_pts: int | None = None
        for packet in container.demux(stream):
            if time.monotonic() - last_frame > read_timeout_s:
                raise StreamDropped(f"stalled: no frame for {read_timeout_s:g}s")
            for frame in packet.decode():
                if frame.pts is None or base is None:
                    continue
                pts_ms = int(frame.pts * base * 1000)
                first_pts = pts_ms if first_pts is None else first_pts
                last_frame = time.monotonic()
                yield Decoded(pts_ms - first_pts, utc_now(), frame)
        raise StreamDropped("the stream ended")
    except av.FFmpegError as exc:
        raise StreamDropped(f"read failed: {_one_line(exc)}") from None
    except av.error.ExitError:  # pragma: no cover - older PyAV
        raise StreamDropped("read interrupted") from None
    finally:
        container.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:300]
