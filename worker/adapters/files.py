"""The checks of a local video file that need no video library (``framescribe submit`` runs them before it
queues a job, the readers before they open one)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from worker.config_sections import LimitSettings
from worker.errors import VideoOpenError


def check_file(path: Path, limits: LimitSettings) -> int:
    """Refuse what is not a regular, non-empty, readable file of acceptable size; returns its size."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise VideoOpenError(f"{path}: no such file; check the path") from None
    except (OSError, ValueError) as exc:
        raise VideoOpenError(f"{path}: cannot be read ({exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise VideoOpenError(f"{path}: is a directory; give a video file")
    if not stat.S_ISREG(st.st_mode):
        raise VideoOpenError(f"{path}: is not a regular file (device, FIFO or socket); give a video file")
    if st.st_size == 0:
        raise VideoOpenError(f"{path}: the file is empty (0 bytes)")
    if st.st_size > limits.max_input_bytes:
        raise VideoOpenError(f"{path}: {st.st_size} bytes is above the limit of {limits.max_input_bytes} bytes")
    if not os.access(path, os.R_OK):
        raise VideoOpenError(f"{path}: permission denied")
    return st.st_size
