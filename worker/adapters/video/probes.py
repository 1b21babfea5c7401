"""What probing a file found, remembered in this process by the file's identity (device, inode, size,
modification time) and the limits it was checked against.

Probing demuxes the first packets, reads the container index and checks the claimed length near the end of
the file (PyAV ≈ 40 ms of CPU on 720p, OpenCV ≈ 0.2 s). A job opens its video several times in one process
— ``framescribe run`` checks the plan before the job exists, plans, then samples; a worker process runs
many segments of the same job — and each reader used to probe anew. Only successful probes are kept; a
file that changes (size or modification time) is a new key, so it is probed again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import Any

MAX_ENTRIES = 64

_lock = threading.Lock()
_memo: OrderedDict[Hashable, Any] = OrderedDict()


def key(backend: str, path: Path, limits: Any) -> Hashable | None:
    """The memo key of ``path`` as it is now (None when it cannot be stat'ed: nothing is remembered)."""
    try:
        st = path.stat()
    except OSError:
        return None
    checked = tuple(sorted(limits.model_dump().items())) if hasattr(limits, "model_dump") else repr(limits)
    return (backend, str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, checked)


def recall(memo_key: Hashable | None) -> Any:
    if memo_key is None:
        return None
    with _lock:
        found = _memo.get(memo_key)
        if found is not None:
            _memo.move_to_end(memo_key)
        return found


def remember(memo_key: Hashable | None, facts: Any) -> None:
    if memo_key is None:
        return
    with _lock:
        _memo[memo_key] = facts
        _memo.move_to_end(memo_key)
        while len(_memo) > MAX_ENTRIES:
            _memo.popitem(last=False)


def forget() -> None:
    """Drop everything remembered (tests)."""
    with _lock:
        _memo.clear()
