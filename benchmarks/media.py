"""Benchmark media: H.264 from ffmpeg's lavfi ``testsrc2``, generated once and cached by its parameters."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.media import make_lavfi_video

MEDIA_DIR = Path(__file__).resolve().parent / ".media"


@dataclass(frozen=True)
class Spec:
    seconds: float
    size: tuple[int, int]
    fps: int
    gop: int

    @property
    def filename(self) -> str:
        w, h = self.size
        return f"testsrc2_{w}x{h}_{self.fps}fps_g{self.gop}_{self.seconds:g}s.mp4"

    def describe(self) -> str:
        w, h = self.size
        minutes = f"{self.seconds / 60:g} min" if self.seconds >= 120 else f"{self.seconds:g} s"
        return (
            f"{h}p{self.fps} H.264 GOP {self.gop}, {minutes}"
            if h >= 360
            else f"{w}x{h} {self.fps} fps GOP {self.gop}, {minutes}"
        )


# long_gop: goals 1, 3, 5; short_gop: goals 2, 3; mem_*: goal 4 (same format, 60x apart); clip: goal 6.
FULL = {
    "long_gop": Spec(120, (1280, 720), 30, 250),
    "short_gop": Spec(240, (1280, 720), 30, 30),
    "mem_long": Spec(7200, (160, 120), 10, 250),
    "mem_short": Spec(120, (160, 120), 10, 250),
    "clip": Spec(12, (320, 240), 25, 50),
}
SMOKE = {
    "long_gop": Spec(6, (320, 240), 30, 250),
    "short_gop": Spec(6, (320, 240), 30, 30),
    "mem_long": Spec(60, (160, 120), 10, 250),
    "mem_short": Spec(6, (160, 120), 10, 250),
    "clip": Spec(4, (160, 120), 10, 20),
}


def ensure(spec: Spec, folder: Path) -> Path:
    """The cached file for ``spec``, generated (atomically) when missing."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.filename
    if path.is_file() and path.stat().st_size > 0:
        return path
    tmp = folder / f".tmp-{os.getpid()}-{spec.filename}"
    try:
        make_lavfi_video(tmp, seconds=spec.seconds, size=spec.size, fps=spec.fps, gop=spec.gop)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
