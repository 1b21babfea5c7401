"""Checking a job's source before anything is queued: paths, URLs and uploads.

* paths: ``worker.sources.resolve_local`` (inside the allowed roots, symlinks resolved, regular files);
* URLs: ``preflight_url`` fetches the first bytes, re-checking the SSRF rules on every redirect hop;
* uploads: ``receive_upload`` streams a multipart body to disk and stops at the size cap (413);
* content: ``sniff`` checks the container's magic bytes, then OpenCV probes local files.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from scheduler.api.errors import ApiError
from worker.adapters.video.opencv import OpenCVReader
from worker.config import Settings
from worker.core.models import VideoInfo
from worker.errors import SourceError, VideoOpenError
from worker.service.sources import UPLOAD_FILE as UPLOAD_FILE  # the fixed name every upload is stored under
from worker.service.sources import upload_dir_of as upload_dir_of  # re-exported
from worker.service.sources import uploads_dir
from worker.sources import check_url, get_checked, resolve_local

HEAD_BYTES = 64 * 1024
PREFLIGHT_TIMEOUT_S = 10.0
OPTIONS_MAX_BYTES = 64 * 1024
DRAIN_MAX_BYTES = 64 * 1024 * 1024  # read (and drop) this much past the cap so the client sees the 413
FORM_OVERHEAD = 64 * 1024


def sniff(head: bytes) -> str | None:
    """The container named by the first bytes, or None when they are not a video we accept."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4/mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska/webm"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"FLV"):
        return "flv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf/wmv"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "mpeg-ps"
    if len(head) > 376 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "mpeg-ts"
    return None


def describe_bytes(head: bytes) -> str:
    """A guess at what a refused file is, for the error message."""
    if not head:
        return "an empty file"
    if head.lstrip().startswith(b"#EXTM3U"):
        return "an HLS playlist"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image"
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if head.lstrip()[:1] in (b"<", b"{", b"["):
        return "markup or JSON text"
    try:
        head[:512].decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "an unknown binary format"


def require_video_head(head: bytes, where: str, field_name: str) -> str:
    kind = sniff(head)
    if kind is None:
        raise ApiError(
            422,
            "not_a_video",
            f"{where} is not a video container we accept (it looks like {describe_bytes(head)}); "
            "send MP4/MOV, MKV/WebM, AVI, MPEG-TS/PS, FLV, ASF or Ogg",
            field=field_name,
        )
    return kind


def probe_local(path: Path, settings: Settings, where: str, field_name: str) -> VideoInfo:
    """Magic bytes first (cheap, refuses playlists and text), then an OpenCV probe."""
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    require_video_head(head, where, field_name)
    try:
        with OpenCVReader(path, settings.limits) as reader:
            return reader.probe()
    except VideoOpenError as exc:
        msg = exc.message.replace(str(path), where)
        raise ApiError(422, exc.code, msg, field=field_name) from None


def check_path(path: str, settings: Settings) -> Path:
    return resolve_local(path, settings.allowed_roots)


def check_folder(folder: str, settings: Settings) -> Path:
    """The real path of a folder inside the allowed roots (the same rules the schedule runs apply)."""
    from worker.service.schedules import resolve_folder

    return resolve_folder(folder, list(settings.allowed_roots))


def url_allow(settings: Settings) -> list[str]:
    return list(settings.scheduler.allow_private_urls)


def preflight_url(url: str, settings: Settings) -> str:
    """Fetch the first bytes of ``url`` (SSRF rules re-checked on every redirect) and sniff them.

    At most ``security.max_url_checks`` run at once (more: 503), each within the wall-clock
    ``security.url_check_timeout_s``. Returns the container kind. Raises SourceError (field ``url``)
    or ApiError 422 ``not_a_video``."""
    from scheduler.api.guards import url_check_slot

    with url_check_slot(settings.security.max_url_checks):
        return _preflight(url, settings, time.monotonic() + settings.security.url_check_timeout_s)


def _preflight(url: str, settings: Settings, deadline: float) -> str:
    read_s = max(0.2, min(PREFLIGHT_TIMEOUT_S, settings.security.url_check_timeout_s / 2))
    late = SourceError("the URL did not answer in time", field="url")
    range_ = {"Range": f"bytes=0-{HEAD_BYTES - 1}"}
    with httpx.Client(follow_redirects=False, timeout=httpx.Timeout(read_s), trust_env=False) as client:
        try:
            with get_checked(client, url, url_allow(settings), range_, deadline=deadline) as (_, resp):
                if resp.status_code not in (200, 206):
                    raise SourceError(f"the server answered HTTP {resp.status_code} for the URL", field="url")
                head = b""
                for chunk in resp.iter_bytes():  # every network read: the deadline holds for drips
                    head += chunk
                    if len(head) >= HEAD_BYTES:
                        break
                    if time.monotonic() > deadline:
                        raise late
        except httpx.TimeoutException:
            raise late from None
        except httpx.HTTPError as exc:
            raise SourceError(f"the URL could not be fetched ({type(exc).__name__})", field="url") from None
    return require_video_head(head, "the URL", "url")


def check_webhook(url: str, settings: Settings) -> None:
    if settings.scheduler.webhook_secret is None:
        raise ApiError(
            422,
            "webhooks_disabled",
            "webhooks need a signing secret: set FRAMESCRIBE_SCHEDULER__WEBHOOK_SECRET on the service",
            field="webhook_url",
        )
    try:
        check_url(url, url_allow(settings))
    except SourceError as exc:
        raise SourceError(exc.message.replace("the URL", "the webhook URL"), field="webhook_url") from None


# -- uploads ----------------------------------------------------------------------------------
def safe_filename(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in base)[:100].lstrip(".")
    return safe or "upload.bin"


@dataclass
class Upload:
    folder: Path
    path: Path | None = None
    filename: str = ""
    size: int = 0
    options: bytes = b""
    too_large: bool = False
    problem: str | None = None
    problem_field: str | None = None
    _part: str | None = None
    _fh: Any = None
    _headers: dict[str, str] = field(default_factory=dict)
    _hname: bytes = b""
    _hvalue: bytes = b""

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        shutil.rmtree(self.folder, ignore_errors=True)


def _callbacks(up: Upload, max_bytes: int) -> dict[str, Callable[..., None]]:
    def header_field(data: bytes, start: int, end: int) -> None:
        up._hname += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        up._hvalue += data[start:end]

    def header_end() -> None:
        up._headers[up._hname.decode("latin-1").lower()] = up._hvalue.decode("latin-1")
        up._hname, up._hvalue = b"", b""

    def part_begin() -> None:
        up._headers, up._part = {}, None

    def headers_finished() -> None:
        _, params = parse_options_header(up._headers.get("content-disposition", ""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        up._part = name
        if name == "file":
            if up.path is not None:
                up.problem, up.problem_field = "send exactly one 'file' part", "file"
                up._part = None
                return
            up.filename = safe_filename(params.get(b"filename", b"upload.bin").decode("utf-8", "replace"))
            up.folder.mkdir(parents=True, exist_ok=True)
            up.path = up.folder / UPLOAD_FILE  # never the client's extension (.html would be served as HTML)
            up._fh = up.path.open("wb")
        elif name != "options" and up.problem is None:
            up.problem, up.problem_field = f"unknown form field '{name[:50]}' (use 'file' and 'options')", name[:50]

    def part_data(data: bytes, start: int, end: int) -> None:
        n = end - start
        if up._part == "file":
            up.size += n
            if up.size > max_bytes:
                up.too_large = True
                if up._fh is not None:
                    up._fh.close()
                    up._fh = None
                    if up.path is not None:
                        up.path.unlink(missing_ok=True)
                return
            if up._fh is not None:
                up._fh.write(data[start:end])
        elif up._part == "options":
            up.options += data[start:end]
            if len(up.options) > OPTIONS_MAX_BYTES and up.problem is None:
                up.problem, up.problem_field = f"the options part is larger than {OPTIONS_MAX_BYTES} bytes", "options"

    def part_end() -> None:
        if up._part == "file" and up._fh is not None:
            up._fh.close()
            up._fh = None
        up._part = None

    return {
        "on_part_begin": part_begin,
        "on_part_data": part_data,
        "on_part_end": part_end,
        "on_header_field": header_field,
        "on_header_value": header_value,
        "on_header_end": header_end,
        "on_headers_finished": headers_finished,
    }


async def receive_upload(request: Request, settings: Settings) -> Upload:
    """Stream a multipart body to ``DATA_DIR/uploads/<id>/``; over the cap -> ApiError 413.

    Past the cap the rest of the body is read and dropped (up to 64 MiB) so that the client gets the
    413 instead of a reset connection; nothing more is written to disk."""
    cap = settings.scheduler.max_upload_bytes
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ApiError(415, "unsupported_media_type", "send JSON, or multipart/form-data with a boundary")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap + FORM_OVERHEAD + DRAIN_MAX_BYTES:
        raise ApiError(413, "too_large", f"the upload is larger than the limit of {cap} bytes", field="file")
    up = Upload(folder=uploads_dir(settings) / uuid.uuid4().hex)
    parser = MultipartParser(boundary, _callbacks(up, cap))  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if up.too_large:
                if received > cap + FORM_OVERHEAD + DRAIN_MAX_BYTES:
                    break
                continue
            parser.write(chunk)
        if not up.too_large:
            parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        up.discard()
        raise ApiError(400, "bad_multipart", f"the multipart body is malformed ({type(exc).__name__})") from None
    except ClientDisconnect:
        up.discard()
        raise ApiError(400, "client_disconnected", "the upload was interrupted") from None
    except BaseException:
        up.discard()
        raise
    if up.too_large:
        up.discard()
        raise ApiError(413, "too_large", f"the upload is larger than the limit of {cap} bytes", field="file")
    if up.problem:
        up.discard()
        raise ApiError(422, "invalid_field", up.problem, field=up.problem_field)
    if up.path is None or up.size == 0:
        up.discard()
        raise ApiError(422, "missing_field", "the upload has no 'file' part, or it is empty", field="file")
    return up


def parse_options_part(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(422, "invalid_json", "the 'options' part is not valid JSON", field="options") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_field", "the 'options' part must be a JSON object", field="options")
    return data
