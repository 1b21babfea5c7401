"""Video readers behind one interface: the backend registry and ``open_reader``, which picks a backend and a
way of reading (sequential, skip, seek, keyframes) per call from the cost model in ``worker.core.readplan``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from worker.adapters.files import check_file
from worker.adapters.video.heap import keep_frame_memory
from worker.adapters.video.opencv import OpenCVReader
from worker.config_sections import LimitSettings
from worker.core.models import VideoInfo
from worker.core.readplan import ReadPlan, StreamFacts, plan_for, tolerance_ms
from worker.errors import ConfigError, VideoOpenError

log = logging.getLogger(__name__)


class VideoReader(Protocol):
    """What the pipeline and ``framescribe sample`` need from a reader (a FrameSource you can close)."""

    backend: str
    path: Path

    def probe(self) -> VideoInfo: ...

    def frames(self, targets_ms: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> VideoReader: ...

    def __exit__(self, *exc: object) -> None: ...


BACKENDS: dict[str, Callable[..., Any]] = {"opencv": OpenCVReader}
try:  # PyAV is a dependency, but a broken wheel should cost speed, not the whole reader
    from worker.adapters.video.pyav import PyAVReader

    BACKENDS["pyav"] = PyAVReader
except ImportError as exc:  # pragma: no cover - depends on the environment
    log.warning("PyAV is not usable (%s); reading video with OpenCV only", exc)


def available_backends() -> list[str]:
    return list(BACKENDS)


def open_reader(
    path: str | Path, limits: LimitSettings | None = None, backend: str = "auto", *, keyframe_tolerance: float = 0.0
) -> VideoReader:
    """A reader for ``path``. ``auto`` chooses the backend per ``frames`` call by the read plan's cost;
    ``keyframe_tolerance`` (a fraction of the sampling interval, at most 0.5) lets a keyframe that close to a
    target stand in for it where that is cheaper (its true time is kept)."""
    keep_frame_memory()  # frames reuse freed memory instead of page-faulting new memory each (heap.py)
    if backend == "auto":
        return AutoReader(path, limits, keyframe_tolerance=keyframe_tolerance)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown reader backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}")
    reader: VideoReader = BACKENDS[backend](path, limits, keyframe_tolerance=keyframe_tolerance)
    return reader


def decoder_of(reader: Any, targets_ms: Sequence[int] | None = None) -> str:
    """The backend that decodes ``targets_ms`` with ``reader`` (``auto`` picks one per call), or without
    targets the one its last ``frames`` call used. Frames handed from one call to another must come from
    the same decoder: the backends' colour conversions need not agree to the byte."""
    if getattr(reader, "backend", None) == "auto":
        plan = reader.plan(targets_ms) if targets_ms is not None else reader.last_plan
        return str(plan.backend) if plan is not None else "auto"
    return str(getattr(reader, "backend", "unknown"))


class AutoReader:
    """Probes with PyAV (keyframes from the index or demuxing), reads with whichever backend the plan picks.
    Falls back to OpenCV alone for files PyAV cannot open. Not thread-safe."""

    backend = "auto"

    def __init__(self, path: str | Path, limits: LimitSettings | None = None, *, keyframe_tolerance: float = 0.0):
        self.path = Path(path)
        self.limits = limits or LimitSettings()
        self.keyframe_tolerance = keyframe_tolerance
        check_file(self.path, self.limits)
        make = BACKENDS.get("pyav")
        self._pyav: Any = make(self.path, self.limits, keyframe_tolerance=keyframe_tolerance) if make else None
        self._opencv: OpenCVReader | None = None
        self.last_plan: ReadPlan | None = None

    def _cv(self) -> OpenCVReader:
        if self._opencv is None:
            self._opencv = OpenCVReader(self.path, self.limits, keyframe_tolerance=self.keyframe_tolerance)
        return self._opencv

    def probe(self) -> VideoInfo:
        if self._pyav is None:
            return self._cv().probe()
        try:
            info: VideoInfo = self._pyav.probe()
            return info
        except VideoOpenError as exc:
            try:
                info = self._cv().probe()
            except VideoOpenError:
                raise exc from None
            log.warning("%s: PyAV cannot read it (%s); reading with OpenCV", self.path, exc.message)
            self._pyav.close()
            self._pyav = None
            return info

    def plan(self, targets_ms: Sequence[int]) -> ReadPlan:
        info = self.probe()
        if self._pyav is None:
            return plan_for(StreamFacts(info.fps, None), targets_ms, 0, backends=("opencv",))
        tol = tolerance_ms(targets_ms, self.keyframe_tolerance)
        cover = self._pyav.exact_cover(targets_ms)
        return plan_for(self._pyav.facts(), targets_ms, tol, ("pyav", "opencv"), exact_cover=cover)

    def frames(self, targets_ms: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        """As ``OpenCVReader.frames``; with a keyframe tolerance, a keyframe may stand in for its target."""
        if not targets_ms:
            return
        plan = self.plan(targets_ms)
        self.last_plan = plan
        log.debug("%s: %s", self.path, plan.reason)
        if plan.backend == "opencv" or self._pyav is None:
            yield from self._cv().frames(targets_ms, strategy=plan.strategy)
        else:
            yield from self._pyav.frames(targets_ms, strategy=plan.strategy, tolerance=plan.tolerance_ms)

    @property
    def passed(self) -> int:
        """Frames gone by without being yielded, over both backends (``PyAVReader.passed``)."""
        return sum(r.passed for r in (self._pyav, self._opencv) if r is not None)

    def close(self) -> None:
        if self._pyav is not None:
            self._pyav.close()
        if self._opencv is not None:
            self._opencv.close()

    def __enter__(self) -> AutoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
