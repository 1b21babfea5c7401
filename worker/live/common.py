"""Small pieces shared by the live modules: UTC helpers, a sampled frame kept in memory, run counters."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.adapters.frames.local import atomic_write
from worker.core.models import FrameRef
from worker.errors import StoreError


@dataclass(frozen=True, slots=True)
class Kept:
    """A sampled frame in memory: its JPEG (at the pixel budget) and a small copy for analysis."""

    jpeg: bytes
    width: int
    height: int
    thumb: Any


def write_frame(folder: Path, n: int, t_ms: int, kept: Kept) -> FrameRef:
    path = folder / f"frame_{n:04d}_{t_ms:010d}ms.jpg"
    try:
        atomic_write(path, kept.jpeg)
    except OSError as exc:
        raise StoreError(f"cannot write frame {path}: {exc.strerror or exc}") from None
    return FrameRef(n, t_ms, str(path.resolve()), kept.width, kept.height, len(kept.jpeg))


def utc_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Counters:
    segments: int = 0
    static: int = 0
    described: int = 0
    failed: int = 0
    alerts: int = 0
    digests: int = 0
    gaps: int = 0
    reconnects: int = 0
    reconnect_s: list[float] = field(default_factory=list)  # drop -> first frame again

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "reconnect_s"} | {
            "reconnect_s": [round(x, 2) for x in self.reconnect_s]
        }
