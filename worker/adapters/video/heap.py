"""Decoded frames reuse their memory instead of page-faulting fresh memory for every frame.

A decoded 720p frame is a 2.7 MB BGR array, made and dropped once per sampled frame (and PyAV's reformat
makes a second buffer of the same size). glibc serves allocations that big with ``mmap`` and gives them
back with ``munmap`` as soon as they are freed, so every frame's memory is new to the process and the kernel
zero-fills it page by page: in ``framescribe sample`` at 1 fps on 720p that was ~400 minor page faults per
frame, about 0.15-0.2 s of system time over 240 frames (issue 19, goal 1). Raising glibc's mmap threshold
to its maximum (32 MB) puts frames on the heap, where a freed frame's memory is reused by the next one; the
trim threshold bounds how much freed memory the process keeps (128 MB), so memory still stays flat.

Process-wide and applied once; on a C library without ``mallopt`` (or not Linux) it does nothing.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit: a 4K BGR frame is 25 MB
TRIM_THRESHOLD = 128 * 1024 * 1024

_applied: bool | None = None


def keep_frame_memory() -> bool:
    """Set glibc's thresholds once per process; True when the C library took them."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
