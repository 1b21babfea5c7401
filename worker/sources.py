"""Where a video may come from: local paths inside allowed roots, or http(s) URLs that pass the SSRF rules.

The same checks guard REST submissions, the worker's downloader and webhook targets.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from worker.errors import SourceError

MAX_PATH_CHARS = 4096
MAX_REDIRECTS = 5
METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# -- local paths -------------------------------------------------------------------------------
def resolve_local(path: str, allowed_roots: Sequence[Path]) -> Path:
    """The real path of a regular file inside one of ``allowed_roots`` (after resolving symlinks)."""
    real = resolve_inside(path, allowed_roots)
    mode = real.stat().st_mode
    if not stat.S_ISREG(mode):
        raise SourceError(f"{path}: not a regular file", field="path")
    return real


def resolve_inside(path: str, roots: Sequence[Path], *, noun: str = "path", kind: str = "file",
                   field: str = "path") -> Path:  # fmt: skip
    """The one path-inside-roots check (files and watched folders): the real path of ``path``, symlinks
    resolved, inside one of ``roots``; no NUL, no '..', bounded length."""
    if not roots:
        raise SourceError(f"{noun} sources are disabled: set FRAMESCRIBE_ALLOWED_ROOTS to the folders to allow",
                          field=field)  # fmt: skip
    if "\x00" in path:
        raise SourceError(f"the {noun} contains a NUL byte", field=field)
    if not path or len(path) > MAX_PATH_CHARS:
        raise SourceError(f"the {noun} must be 1 to {MAX_PATH_CHARS} characters long", field=field)
    if ".." in PurePosixPath(path).parts:
        raise SourceError(f"the {noun} may not contain '..'", field=field)
    try:
        real = Path(path).resolve(strict=True)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such {kind}", field=field) from None
    except (OSError, RuntimeError) as exc:  # name too long, symlink loop
        raise SourceError(f"{path[:200]}: cannot be resolved ({exc.__class__.__name__})", field=field) from None
    if not inside_roots(real, roots):
        raise SourceError(f"{path}: outside the allowed folders", field=field)
    return real


def inside_roots(real: Path, roots: Sequence[Path]) -> bool:
    """Whether the resolved path ``real`` is one of ``roots`` or lies below one (roots resolved too)."""
    return any(real == r or real.is_relative_to(r) for r in (root.resolve() for root in roots))


# -- URLs --------------------------------------------------------------------------------------
def _allowed(ip: IpAddress, host: str, allow: Sequence[str]) -> bool:
    for entry in allow:
        if entry.lower() == host.lower():
            return True
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def forbidden_address(ip: IpAddress) -> str | None:
    """Why an address may not be fetched (None when it is a public unicast address)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return forbidden_address(ip.ipv4_mapped)
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata)"
    if ip.is_private:
        return "private"
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified or ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


def resolve_host(host: str, port: int) -> list[IpAddress]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise SourceError(f"cannot resolve host '{host}': {exc}", field="url") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def check_url(url: str, allow: Sequence[str] = ()) -> None:
    """Refuse anything but http(s) to public addresses (checked after DNS resolution)."""
    if len(url) > 8192 or any(c in url for c in "\x00\r\n"):
        raise SourceError("the URL is malformed", field="url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise SourceError(f"only http and https URLs are accepted, not '{parts.scheme or 'none'}'", field="url")
    host = parts.hostname
    if not host:
        raise SourceError("the URL has no host", field="url")
    if parts.username or parts.password:
        raise SourceError("URLs with credentials are not accepted", field="url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise SourceError("the URL's port is invalid", field="url") from None
    if host.lower() in METADATA_HOSTS:
        raise SourceError(f"host '{host}' is a cloud metadata service", field="url")
    for ip in resolve_host(host, port):
        reason = forbidden_address(ip)
        if reason and not _allowed(ip, host, allow):
            raise SourceError(f"host '{host}' resolves to a {reason} address ({ip}), which is refused", field="url")


def _filename(url: str) -> str:
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100].lstrip(".")
    return safe or "source.mp4"


def download(url: str, dest_dir: Path, *, max_bytes: int, timeout_s: float, allow: Sequence[str] = ()) -> Path:
    """Fetch ``url`` into ``dest_dir`` within a size and time limit, re-checking every redirect hop.

    The file appears only complete (temp file + rename)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(follow_redirects=False, timeout=httpx.Timeout(min(30.0, timeout_s))) as client:
        try:
            with get_checked(client, url, allow) as (final, resp):
                if resp.status_code != 200:
                    raise SourceError(f"the server answered HTTP {resp.status_code} for {url}", field="url")
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise SourceError(f"the file is {declared} bytes, above the limit of {max_bytes}", field="url")
                return _save(resp, dest_dir, _filename(final), max_bytes, deadline)
        except httpx.TimeoutException:
            raise SourceError(f"downloading {url} timed out", field="url") from None
        except httpx.HTTPError as exc:
            raise SourceError(f"downloading {url} failed: {exc.__class__.__name__}", field="url") from None


@contextmanager
def get_checked(
    client: httpx.Client, url: str, allow: Sequence[str] = (), headers: dict[str, str] | None = None
) -> Iterator[tuple[str, httpx.Response]]:
    """The one SSRF redirect loop: GET ``url`` following redirects by hand, the SSRF rules re-checked
    on every hop; yields ``(final_url, streamed_response)``."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        check_url(current, allow)
        with client.stream("GET", current, headers=headers) as resp:
            if resp.is_redirect:
                location = resp.headers.get("location")
                if not location:
                    raise SourceError("the server redirected without a Location header", field="url")
                current = urljoin(current, location)
                continue
            yield current, resp
            return
    raise SourceError(f"the URL redirects more than {MAX_REDIRECTS} times", field="url")


def _save(resp: httpx.Response, dest_dir: Path, name: str, max_bytes: int, deadline: float) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=dest_dir)
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in resp.iter_bytes(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise SourceError(f"the download exceeded the limit of {max_bytes} bytes", field="url")
                if time.monotonic() > deadline:
                    raise SourceError("the download took longer than its time limit", field="url")
                fh.write(chunk)
        if size == 0:
            raise SourceError("the server sent an empty file", field="url")
        target = dest_dir / name
        os.replace(tmp, target)
        return target
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
