"""Where a live stream may come from: rtsp(s)://, HLS over http(s), or a local device, under the SSRF rules.

A camera on a private network (or loopback) is accepted only when the operator names its host or
network in ``allow`` (``live.allow_cameras`` / ``scheduler.allow_private_urls`` / ``--allow-camera``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from worker.errors import SourceError
from worker.sources import METADATA_HOSTS, _allowed, forbidden_address, resolve_host

SCHEMES = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class LiveSource:
    url: str
    kind: str  # rtsp | hls | device

    @property
    def redacted(self) -> str:
        """The URL without credentials (for logs, status and the job's source name)."""
        parts = urlsplit(self.url)
        if parts.username or parts.password:
            netloc = parts.hostname or ""
            if parts.port:
                netloc += f":{parts.port}"
            return parts._replace(netloc=f"***@{netloc}").geturl()
        return self.url


def check_live(url: str, allow: Sequence[str] = (), devices: Sequence[str] = ("/dev/video",)) -> LiveSource:
    """A checked live source, or a one-line SourceError saying why not."""
    if not url or len(url) > 4096 or any(c in url for c in "\x00\r\n"):
        raise SourceError("the stream URL is malformed", field="url")
    if url.startswith("/"):
        return LiveSource(url, "device") if _device_ok(url, devices) else _refuse_device(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise SourceError(
            f"a stream must be rtsp://, rtsps://, an http(s) .m3u8 playlist or a device path, not '{scheme or url}'",
            field="url",
        )
    if scheme in ("http", "https") and not parts.path.lower().endswith(".m3u8"):
        raise SourceError("an http(s) stream must be an HLS playlist (.m3u8)", field="url")
    host = parts.hostname
    if not host:
        raise SourceError("the stream URL has no host", field="url")
    try:
        port = parts.port or SCHEMES[scheme]
    except ValueError:
        raise SourceError("the stream URL's port is invalid", field="url") from None
    if host.lower() in METADATA_HOSTS:
        raise SourceError(f"host '{host}' is a cloud metadata service", field="url")
    for ip in resolve_host(host, port):
        reason = forbidden_address(ip)
        if reason and not _allowed(ip, host, allow):
            raise SourceError(
                f"camera host '{host}' resolves to a {reason} address ({ip}); name it in live.allow_cameras "
                "(or --allow-camera) to allow it",
                field="url",
            )
    return LiveSource(url, "hls" if scheme in ("http", "https") else "rtsp")


def _device_ok(path: str, prefixes: Sequence[str]) -> bool:
    if ".." in Path(path).parts or not any(path.startswith(p) for p in prefixes):
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise SourceError(f"{path}: no such device", field="url") from None
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _refuse_device(path: str) -> LiveSource:
    raise SourceError(f"{path}: not an allowed capture device (live.devices names the allowed prefixes)", field="url")
