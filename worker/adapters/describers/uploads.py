"""Frame uploads to DashScope's temporary OSS storage, under the attempt's deadline, re-used while valid.

The same two requests the SDK makes for a ``file://`` value (dashscope-protocol §1.4: ``GET
uploads?action=getPolicy`` then a multipart ``POST`` to the policy's ``upload_host``), but each one is
bounded by what is left of the attempt (the SDK allows 300 s and 3,600 s per file), counted, and never
repeated for a frame already uploaded: the ``oss://`` URL is kept next to the segment's frames
(``seg_NNNNN.uploads.json``, by model and content hash) and re-used by every retry while it is valid
(DashScope keeps temporary files 48 h; ``dashscope.upload_reuse_s`` is a little less). Only frames not
uploaded yet cost a getPolicy and a POST. The SDK is then given the ``oss://`` URLs, which it sends as
they are (with ``X-DashScope-OssResourceResolve: enable``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mimetypes
import os
import time
from collections.abc import Sequence
from email.utils import formatdate
from pathlib import Path
from typing import Any

import requests

from worker.adapters.describers.transport import AUTH_HINT, classify
from worker.adapters.describers.wire import Attempt, was_sent
from worker.adapters.frames.local import atomic_write
from worker.errors import DescriberAuthError, DescriberError, DescriberRejected, DescriberTransient

REUSE_DEFAULT_S = 47 * 3600.0


def _digest(path: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise DescriberRejected(f"cannot read frame {path}: {exc.strerror or exc}") from None
    return h.hexdigest()


class UploadLedger:
    """``oss://`` URLs of a segment's frames by ``model:sha256`` with their upload time (a JSON file)."""

    def __init__(self, frames: Sequence[str], reuse_s: float = REUSE_DEFAULT_S) -> None:
        folder = Path(frames[0]).parent if frames else Path(".")
        self.path = folder.with_name(folder.name + ".uploads.json")
        self.reuse_s = reuse_s
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.entries: dict[str, dict[str, Any]] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.entries = {}

    def get(self, key: str) -> str | None:
        entry = self.entries.get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            return None
        if time.time() - float(entry.get("at", 0)) > self.reuse_s:
            return None
        return str(entry["url"])

    def put(self, key: str, url: str) -> None:
        self.entries[key] = {"url": url, "at": time.time()}
        now = time.time()
        live = {k: v for k, v in self.entries.items() if now - float(v.get("at", 0)) <= self.reuse_s}
        with contextlib.suppress(OSError):  # re-use is an optimisation: a frame not remembered is re-uploaded
            atomic_write(self.path, json.dumps(live).encode())


def upload_frames(
    frames: Sequence[str],
    model: str,
    api_key: str,
    base_url: str,
    att: Attempt,
    reuse_s: float = REUSE_DEFAULT_S,
    *,
    fresh: bool = False,
) -> tuple[list[str], int]:
    """``oss://`` URLs for ``frames`` (paths), uploading only those without a valid one (all of them if
    ``fresh``). Returns the URLs and how many were re-used. Raises a DescriberError (transient for
    network/5xx/timeouts)."""
    ledger = UploadLedger(frames, reuse_s)
    if fresh:
        ledger.entries.clear()
    keys = [f"{model}:{_digest(p)}" for p in frames]
    urls: list[str | None] = [ledger.get(k) for k in keys]
    reused = sum(u is not None for u in urls)
    missing = [i for i, u in enumerate(urls) if u is None]
    if missing:
        with requests.Session() as session:
            policy = _policy(session, model, api_key, base_url, att)
            for i in missing:
                urls[i] = _post(session, frames[i], policy, att)
                ledger.put(keys[i], str(urls[i]))
    return [str(u) for u in urls], reused


def _policy(session: requests.Session, model: str, api_key: str, base_url: str, att: Attempt) -> dict[str, Any]:
    timeout = att.remaining("getPolicy")
    att.policy += 1
    try:
        rsp = session.get(
            f"{base_url.rstrip('/')}/uploads",
            params={"action": "getPolicy", "model": model},
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json; charset=utf-8"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        att.lost = att.lost or was_sent(exc)
        raise DescriberTransient(f"DashScope getPolicy failed: {type(exc).__name__}") from None
    if rsp.status_code != 200:
        err = _error(rsp, "getPolicy")
        if isinstance(err, DescriberAuthError):
            raise DescriberAuthError(f"DashScope refused the frame upload: {err.message} — {AUTH_HINT}")
        raise err if isinstance(err, DescriberTransient) else DescriberTransient(err.message)
    try:
        data = rsp.json()["data"]
        for name in ("policy", "signature", "upload_dir", "upload_host", "oss_access_key_id"):
            if not isinstance(data[name], str):
                raise TypeError(name)
    except (ValueError, KeyError, TypeError):
        raise DescriberTransient("DashScope sent a malformed upload policy") from None
    return dict(data)


def _post(session: requests.Session, path: str, policy: dict[str, Any], att: Attempt) -> str:
    key = f"{policy['upload_dir']}/{os.path.basename(path)}"
    form = {
        "OSSAccessKeyId": policy["oss_access_key_id"],
        "Signature": policy["signature"],
        "policy": policy["policy"],
        "key": key,
        "x-oss-object-acl": str(policy.get("x_oss_object_acl", "private")),
        "x-oss-forbid-overwrite": str(policy.get("x_oss_forbid_overwrite", "true")),
        "success_action_status": "200",
        "x-oss-content-type": mimetypes.guess_type(path)[0] or "application/octet-stream",
    }
    timeout = att.remaining("an OSS upload")
    att.uploads += 1
    try:
        with open(path, "rb") as fh:
            rsp = session.post(
                policy["upload_host"],
                data=form,
                files={"file": (os.path.basename(path), fh)},
                headers={"Accept": "application/json", "Date": formatdate(usegmt=True)},
                timeout=timeout,
            )
    except OSError as exc:
        if isinstance(exc, requests.RequestException):
            att.lost = att.lost or was_sent(exc)
            raise DescriberTransient(f"uploading a frame to DashScope failed: {type(exc).__name__}") from None
        raise DescriberRejected(f"cannot read frame {path}: {exc.strerror or exc}") from None
    if rsp.status_code != 200:
        raise DescriberTransient(f"uploading a frame to DashScope failed: HTTP {rsp.status_code}")
    return f"oss://{key}"


def _error(rsp: requests.Response, what: str) -> DescriberError:
    try:
        body = rsp.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    return classify(rsp.status_code, body.get("code"), f"{what}: {body.get('message') or rsp.reason}")
