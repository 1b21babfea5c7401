"""A job's options resolved over the settings once: the steps read ``Resolved``, never
``opts.X or settings.Y.X`` (the planner's own ``worker.options.plan_params`` covers sampling)."""

from __future__ import annotations

from dataclasses import dataclass

from worker.config import Settings
from worker.options import JobOptions


@dataclass(frozen=True, slots=True)
class Resolved:
    describer: str  # "local" | "dashscope": the "auto" rule applied
    model: str
    preset: str
    prompt: str | None
    segmenter: str
    max_video_tokens: int | None
    max_calls: int | None
    max_pixels: int | None

    @property
    def paid(self) -> bool:
        """Whether calls are billed, so the caps apply (DashScope)."""
        return self.describer == "dashscope"


def resolve(opts: JobOptions, settings: Settings) -> Resolved:
    d = settings.dashscope
    return Resolved(
        describer=settings.resolve_describer(opts.describer or settings.describer.kind),
        model=opts.model or d.model,
        preset=opts.preset or settings.describer.preset,
        prompt=opts.prompt or settings.describer.prompt,
        segmenter=opts.segmenter or settings.sampling.segmenter,
        max_video_tokens=opts.max_video_tokens or d.max_video_tokens,
        max_calls=opts.max_calls or d.max_calls,
        max_pixels=opts.max_pixels or d.max_pixels,
    )
