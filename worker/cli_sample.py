"""``framescribe sample``: the sampled frames as JPEG with their true times, and nothing else.

The job a user would otherwise do with ``ffmpeg -i VIDEO -vf fps=F out/%06d.jpg``, done with the pipeline's
reader (``open_reader``: keyframes found by demuxing, only kept frames converted) and its JPEG writer. Files
are ``frame_<n>_<pts>ms.jpg``; ``frames.csv`` beside them lists ``n,pts_ms,file``. JPEG encoding runs in a
small thread pool while the next frames decode.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from worker.cli import ConfigOpt, app, guarded
from worker.errors import PlanError
from worker.logs import configure
from worker.settings_cache import sample_defaults


@app.command()
def sample(
    video: Annotated[Path, typer.Argument(help="The video file to sample.")],
    fps: Annotated[float, typer.Option("--fps", help="Frames kept per second of video.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the JPEGs and frames.csv.")],
    start: Annotated[float | None, typer.Option(help="Start of the range (s).")] = None,
    end: Annotated[float | None, typer.Option(help="End of the range (s).")] = None,
    keyframes: Annotated[
        bool, typer.Option("--keyframes", help="Let the nearest keyframe within the tolerance stand in for a target.")
    ] = False,
    tolerance: Annotated[
        float | None,
        typer.Option(help="Seconds a keyframe may lie from its target (implies --keyframes; default 1/(2·fps))."),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="Reader: auto | opencv | pyav.")] = None,
    quality: Annotated[int | None, typer.Option(min=30, max=100, help="JPEG quality.")] = None,
    max_pixels: Annotated[int, typer.Option(min=0, help="Pixel budget per frame (0 = source size).")] = 0,
    config: ConfigOpt = None,
) -> None:
    """Write the frames sampled at FPS as JPEG files named with their true times, plus frames.csv."""
    defaults = sample_defaults(config)  # remembered: no settings model to build on a second run
    configure(defaults["log_level"], defaults["log_format"])
    if not (fps > 0 and fps <= 1000):
        raise PlanError(f"--fps must be above 0 (and at most 1000), got {fps:g}", field="fps")
    from worker.adapters.frames.sampler import run_sample, tolerance_fraction  # cv2, PyAV: this command only

    fraction = tolerance_fraction(fps, keyframes, tolerance)
    result = run_sample(
        video,
        out_dir,
        fps,
        start_s=start,
        end_s=end,
        keyframe_tolerance=fraction,
        backend=backend or defaults["reader_backend"],
        quality=quality or defaults["jpeg_quality"],
        max_pixels=max_pixels,
        limits=defaults["limits"],
    )
    how = f" ({result.plan.backend}/{result.plan.strategy})" if result.plan else ""
    # one plain line: rich's Console (≈ 20 ms of imports) is not needed for it
    typer.echo(f"wrote {result.frames} frames to {out_dir} in {result.seconds:.2f}s{how}; times in {result.csv_path}")


if __name__ == "__main__":  # python -m worker.cli_sample VIDEO --fps F --out DIR (no other command modules)
    guarded(lambda: app(["sample", *sys.argv[1:]], standalone_mode=True))
