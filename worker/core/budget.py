"""Pixel budgets, per-model limits and the documented video-token formula (dashscope-protocol §4.3)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelLimits:
    min_frames: int
    max_frames: int
    factor: int  # pixels per visual token side: 32 or 28
    max_input_tokens: int
    video_min_pixels: int
    video_max_pixels: int
    video_total_pixels: int


def _limits(factor: int, max_frames: int, max_input: int, vmax: int, vtotal: int) -> ModelLimits:
    vmin = 4 if factor == 32 else 128  # dashscope-protocol §4.3 table
    return ModelLimits(4, max_frames, factor, max_input, vmin * factor**2, vmax * factor**2, vtotal * factor**2)


# Ordered: the first prefix that matches a model name wins.
MODEL_LIMITS: tuple[tuple[str, ModelLimits], ...] = (
    ("qwen3.5", _limits(32, 8000, 258_048, 640, 131_072)),
    ("qwen3-vl-plus", _limits(32, 2000, 258_048, 640, 131_072)),
    ("qwen3-vl-flash", _limits(32, 2000, 258_048, 640, 131_072)),
    ("qwen3-vl", _limits(32, 512, 126_976, 640, 131_072)),
    # Snapshots before 2025-08-13 (max) / 2025-08-15 (plus) use 28-px tokens; later ones and -latest 32 px.
    ("qwen-vl-max-2025-08", _limits(32, 512, 129_024, 640, 131_072)),
    ("qwen-vl-max-2025-", _limits(28, 512, 129_024, 768, 65_536)),
    ("qwen-vl-max-2024", _limits(28, 512, 129_024, 768, 65_536)),
    ("qwen-vl-max", _limits(32, 512, 129_024, 640, 131_072)),
    ("qwen-vl-plus-2025-08", _limits(32, 512, 129_024, 640, 131_072)),
    ("qwen-vl-plus-2025-", _limits(28, 512, 129_024, 768, 65_536)),
    ("qwen-vl-plus-2024", _limits(28, 512, 129_024, 768, 65_536)),
    ("qwen-vl-plus", _limits(32, 512, 129_024, 640, 131_072)),
    ("qwen2.5-vl", _limits(28, 512, 129_024, 768, 65_536)),
    ("qvq", _limits(28, 512, 98_304, 768, 65_536)),
)
DEFAULT_LIMITS = _limits(32, 80, 30_720, 640, 131_072)


def limits_for(model: str) -> ModelLimits:
    name = model.lower()
    for prefix, limits in MODEL_LIMITS:
        if name.startswith(prefix):
            return limits
    return DEFAULT_LIMITS


def smart_resize(height: int, width: int, factor: int, min_pixels: float, max_pixels: float) -> tuple[int, int]:
    """Qwen-VL's resize: sides to multiples of ``factor``, area clamped to ``[min, max]`` pixels."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def frame_size(width: int, height: int, max_pixels: int, factor: int = 32) -> tuple[int, int]:
    """(width, height) to write a frame at: multiples of ``factor``, at most ``max_pixels``."""
    h, w = smart_resize(height, width, factor, factor * factor, max_pixels)
    while h * w > max_pixels and max(h, w) > factor:  # extreme aspect ratios: shrink the long side
        if h >= w:
            h -= factor
        else:
            w -= factor
    return w, h


def video_tokens(n_frames: int, width: int, height: int, limits: ModelLimits) -> int:
    """Tokens DashScope bills for a frame list: pairs merged in time, plus two markers."""
    if n_frames <= 0:
        return 0
    max_px = max(min(limits.video_max_pixels, limits.video_total_pixels / n_frames * 2), 1.05 * limits.video_min_pixels)
    h, w = smart_resize(height, width, limits.factor, limits.video_min_pixels, max_px)
    return math.ceil(n_frames / 2) * (h // limits.factor) * (w // limits.factor) + 2


def text_tokens(text: str) -> int:
    """A rough count for prompts (about four characters a token)."""
    return len(text) // 4 + 1
