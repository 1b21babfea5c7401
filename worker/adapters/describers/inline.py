"""Frames sent inside the request as ``data:image/jpeg;base64,...`` URIs (dashscope-protocol §1.5).

DashScope takes data URIs in a ``video`` frame list in both its native and its OpenAI-compatible API: no
getPolicy, no OSS upload, one request per call. A segment's frames are sent this way while they are small
(``fits``: at most ``MAX_FRAMES`` frames and ``MAX_INLINE_BYTES`` together, the size the docs recommend
base64 below); larger segments go through the uploads (``uploads.py``), which retries re-use.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path

from worker.errors import DescriberRejected

MAX_DATA_URI = 10 * 1024 * 1024  # DashScope's limit per data-URI item
MAX_FRAMES = 250  # DashScope's limit of base64 pictures in one request
MAX_INLINE_BYTES = 7 * 1024 * 1024  # the docs recommend base64 only below this


def data_uri(path: str) -> str:
    """A frame file as ``data:image/jpeg;base64,...``; a frame too big for DashScope is refused here."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DescriberRejected(f"cannot read frame {path}: {exc.strerror or exc}") from None
    uri = "data:image/jpeg;base64," + base64.b64encode(raw).decode("ascii")
    if len(uri) > MAX_DATA_URI:
        raise DescriberRejected(f"frame {path} is {len(raw)} bytes, too big for a data URI: lower max_pixels")
    return uri


def fits(frames: Sequence[str]) -> bool:
    """Whether ``frames`` go inline under ``frames_as: auto`` (an unreadable frame: let the send say so)."""
    if len(frames) > MAX_FRAMES:
        return False
    total = 0
    for path in frames:
        try:
            total += os.path.getsize(path)
        except OSError:
            return True
        if total > MAX_INLINE_BYTES:
            return False
    return True
