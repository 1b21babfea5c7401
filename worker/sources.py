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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import httpx

from worker.core.redact import redact_url
from worker.errors import SourceError

__all__ = [
    "SourceUnavailable",
    "check_url",
    "checked_source",
    "download",
    "get_checked",
    "inside_roots",
    "pinned",
    "redact_url",
    "resolve_inside",
    "resolve_local",
]

MAX_PATH_CHARS = 4096
MAX_REDIRECTS = 5
READ_TIMEOUT_S = 30.0
METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SourceUnavailable(SourceError):
    """The source's server could not be reached or answered 5xx (a later try may work)."""


# -- local paths -------------------------------------------------------------------------------
def resolve_local(path: str, allowed_roots: Sequence[Path]) -> Path:
    """The real path of a regular file inside one of ``allowed_roots`` (after resolving symlinks)."""
    real = resolve_inside(path, allowed_roots)
    if not stat.S_ISREG(real.stat().st_mode):
        raise SourceError(f"{path}: not a regular file", field="path")
    return real


def resolve_inside(path: str, roots: Sequence[Path], *, noun: str = "path", kind: str = "file",
                   field: str = "path") -> Path:  # fmt: skip
    """The one path-inside-roots check (files and watched folders): the real path of ``path``, symlinks
    resolved, inside one of ``roots``; no NUL, no '..', bounded length. A missing path and an existing
    one outside the roots get the same answer (no existence oracle)."""
    if not roots:
        raise SourceError(f"{noun} sources are disabled: set FRAMESCRIBE_ALLOWED_ROOTS to the folders to allow",
                          field=field)  # fmt: skip
    if "\x00" in path:
        raise SourceError(f"the {noun} contains a NUL byte", field=field)
    if not path or len(path) > MAX_PATH_CHARS:
        raise SourceError(f"the {noun} must be 1 to {MAX_PATH_CHARS} characters long", field=field)
    if ".." in PurePosixPath(path).parts:
        raise SourceError(f"the {noun} may not contain '..'", field=field)
    try:  # non-strict: the roots are checked before the path's existence
        real = Path(path).resolve()
    except (OSError, RuntimeError):  # name too long, symlink loop, unreadable parent
        raise SourceError(f"{path[:200]}: cannot be resolved", field=field) from None
    if not inside_roots(real, roots):
        raise SourceError(f"{path}: outside the allowed folders", field=field)
    try:
        real.stat()
    except FileNotFoundError:
        raise SourceError(f"{path}: no such {kind}", field=field) from None
    except OSError as exc:
        raise SourceError(f"{path[:200]}: cannot be resolved ({exc.__class__.__name__})", field=field) from None
    return real


def inside_roots(real: Path, roots: Sequence[Path]) -> bool:
    """Whether the resolved path ``real`` is one of ``roots`` or lies below one (roots resolved too)."""
    return any(real == r or real.is_relative_to(r) for r in (root.resolve() for root in roots))


def checked_source(source: str, allowed_roots: Sequence[Path], data_dir: Path) -> str:
    """Where a worker opens a job's local source: resolved and checked again *now* (a symlink swapped in
    after the submit check is caught). Files the service keeps itself (uploads, downloads) must stay
    inside ``data_dir``; anything else inside ``allowed_roots``. Returns the real path to open.

    With no roots configured no path can be submitted (API, ``framescribe queue``), so a path job can only
    come from the operator's own store: it is opened as stored."""
    if source.lower().startswith(("http://", "https://")) or not allowed_roots:
        return source
    own = data_dir.resolve()
    try:
        real = Path(source).resolve()
    except (OSError, RuntimeError):
        raise SourceError("the job's source cannot be resolved any more", field="path") from None
    lexical = Path(os.path.abspath(source))
    if lexical.is_relative_to(own) and lexical.parent.parent.name in ("uploads", "sources"):
        if not real.is_relative_to(own):
            raise SourceError("the job's stored source now points outside the data folder", field="path")
        if not real.is_file():
            raise SourceError("the job's stored source is no longer on the server", field="path")
        return str(real)
    return str(resolve_local(source, allowed_roots))


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


def check_url(url: str, allow: Sequence[str] = ()) -> list[IpAddress]:
    """Refuse anything but http(s) to public addresses (checked after DNS resolution); returns the
    checked addresses (connect only to these: ``pinned``)."""
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
    ips = resolve_host(host, port)
    for ip in ips:
        reason = forbidden_address(ip)
        if reason and not _allowed(ip, host, allow):
            raise SourceError(f"host '{host}' resolves to a {reason} address ({ip}), which is refused", field="url")
    if not ips:
        raise SourceError(f"cannot resolve host '{host}'", field="url")
    return ips


@dataclass(frozen=True, slots=True)
class Pinned:
    """A request to the address ``check_url`` approved: the URL names the IP, ``Host`` and TLS SNI /
    certificate check keep the host name. A DNS answer that changes after the check (rebinding) is
    never asked for."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, Any]


def pinned(url: str, allow: Sequence[str] = ()) -> Pinned:
    """``check_url`` and the request to send to the checked address."""
    ip = check_url(url, allow)[0]
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    named = f"[{host}]" if ":" in host else host
    target = urlunsplit((parts.scheme, literal + port, parts.path or "/", parts.query, ""))
    extensions: dict[str, Any] = {"sni_hostname": host} if parts.scheme == "https" else {}
    return Pinned(target, {"Host": named + port}, extensions)


def _filename(url: str) -> str:
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100].lstrip(".")
    return safe or "source.mp4"


def download(url: str, dest_dir: Path, *, max_bytes: int, timeout_s: float, allow: Sequence[str] = ()) -> Path:
    """Fetch ``url`` into ``dest_dir`` within a size and a wall-clock time limit, re-checking every
    redirect hop. The file appears only complete (temp file + rename)."""
    deadline = time.monotonic() + timeout_s
    shown = redact_url(url)
    # per-read timeout short, wall clock checked after every network read (a 1-byte drip is cut too)
    read_s = max(0.5, min(READ_TIMEOUT_S, timeout_s / 4))
    with httpx.Client(follow_redirects=False, timeout=httpx.Timeout(read_s), trust_env=False) as client:
        try:
            with get_checked(client, url, allow, deadline=deadline) as (final, resp):
                if resp.status_code != 200:
                    kind = SourceUnavailable if resp.status_code >= 500 else SourceError
                    raise kind(f"the server answered HTTP {resp.status_code} for {shown}", field="url")
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise SourceError(f"the file is {declared} bytes, above the limit of {max_bytes}", field="url")
                return _save(resp, dest_dir, _filename(final), max_bytes, deadline)
        except httpx.TimeoutException:
            raise SourceError(f"downloading {shown} timed out", field="url") from None
        except httpx.TransportError as exc:  # refused, reset: the server may be back in a moment
            raise SourceUnavailable(f"downloading {shown} failed: {exc.__class__.__name__}", field="url") from None
        except httpx.HTTPError as exc:
            raise SourceError(f"downloading {shown} failed: {exc.__class__.__name__}", field="url") from None


@contextmanager
def get_checked(
    client: httpx.Client,
    url: str,
    allow: Sequence[str] = (),
    headers: dict[str, str] | None = None,
    *,
    deadline: float | None = None,
) -> Iterator[tuple[str, httpx.Response]]:
    """The one SSRF redirect loop: GET ``url`` following redirects by hand, the SSRF rules re-checked on
    every hop and each request sent to the address just checked (``pinned``: no DNS rebinding); yields
    ``(final_url, streamed_response)``. ``deadline`` (monotonic) is checked before every hop."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        pin = pinned(current, allow)
        if deadline is not None and time.monotonic() > deadline:
            raise SourceError("the URL did not answer within its time limit", field="url")
        sent = {**(headers or {}), **pin.headers}
        with client.stream("GET", pin.url, headers=sent, extensions=pin.extensions) as resp:
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
            for chunk in resp.iter_bytes():  # every network read, not 64 KiB batches
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
