"""Review copies: one JPEG a frame, at most ``max_side`` pixels on its long side and ``MAX_BYTES`` (quality is
lowered, then the size halved, until it fits), kept in the result store so any machine can serve it."""

from __future__ import annotations

import cv2
import numpy as np

from worker.adapters.frames.shrink import shrink

MAX_BYTES = 192 * 1024  # one review copy, whatever the frame
QUALITIES = (80, 65, 50)


def fit_jpeg(image: np.ndarray, max_side: int, max_bytes: int = MAX_BYTES) -> bytes | None:
    """``image`` as a JPEG no larger than ``max_side`` px and ``max_bytes``; None if nothing fits."""
    side = max_side
    h, w = image.shape[:2]
    while side >= 16:
        scale = min(1.0, side / max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = image if scale >= 1.0 else shrink(image, size)
        for quality in QUALITIES:
            ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(buf) <= max_bytes:
                return bytes(buf)
        side //= 2
    return None
