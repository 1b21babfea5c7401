"""Which files in a watched folder are new: pure decisions over (path, size, mtime) facts, no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from worker.errors import PlanError

MAX_GLOB_CHARS = 200


@dataclass(frozen=True, slots=True)
class FileFacts:
    """One file as seen by a schedule: its real path, size and modification time (ns)."""

    path: str
    size: int
    mtime_ns: int

    @property
    def key(self) -> str:
        """Identity of this version of the file: a rewrite (new size or mtime) is a new file."""
        raw = f"{self.path}\x00{self.size}\x00{self.mtime_ns}".encode("utf-8", "surrogateescape")
        return hashlib.sha256(raw).hexdigest()


def check_glob(pattern: str) -> str:
    """A glob relative to the watched folder; refuses escapes ('..', absolute, NUL) with a reason."""
    if not pattern or len(pattern) > MAX_GLOB_CHARS:
        raise PlanError(f"the glob must be 1 to {MAX_GLOB_CHARS} characters long", field="glob")
    if any(c in pattern for c in "\x00\r\n"):
        raise PlanError("the glob may not contain control characters", field="glob")
    if pattern.startswith(("/", "\\", "~")):
        raise PlanError("the glob must be relative to the folder (no leading '/' or '~')", field="glob")
    if ".." in PurePosixPath(pattern).parts:
        raise PlanError("the glob may not contain '..'", field="glob")
    return pattern


def new_files(
    candidates: Iterable[FileFacts],
    seen: Container[str],
    *,
    now_ns: int,
    settle_s: float,
    limit: int,
) -> Iterator[FileFacts]:
    """Files not seen before (by path + size + mtime) and left untouched for ``settle_s`` seconds.

    A file still being copied in keeps changing its mtime, so waiting for it to settle avoids one
    job per partial version. At most ``limit`` files are returned; the rest wait for the next run.
    """
    if limit <= 0:
        return
    settle_ns = int(settle_s * 1_000_000_000)
    given = 0
    for f in candidates:
        if now_ns - f.mtime_ns < settle_ns or f.size <= 0:
            continue
        if f.key in seen:
            continue
        yield f
        given += 1
        if given >= limit:
            return
