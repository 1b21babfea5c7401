"""Money as data: what a reply's ``usage`` says, the frame size every estimate assumes, and cost.

* ``read_usage``: DashScope may report visual tokens as ``video_tokens``, ``image_tokens`` or only inside
  ``input_tokens_details`` / ``prompt_tokens_details`` (OpenAI-compatible mode); every form is read.
  ``visual`` is None when no form is present (the caller then falls back to its estimate and flags it).
* ``frame_budget``: the pixels and side multiple frames are *written* at, so the server never has to
  shrink them: the smallest of ``sampling.max_pixels``, the ``max_pixels`` sent to DashScope and the
  model's per-frame video limit, sides multiples of the model's token factor (28 or 32 px). The
  estimate, the running cap and the upload all use this one size.
* ``cost``: tokens x the configured price table (per model prefix; input, output, cached input).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.core.budget import limits_for


@dataclass(frozen=True, slots=True)
class ReadUsage:
    input_tokens: int
    output_tokens: int
    visual: int | None  # video + image tokens; None when the reply does not say
    cached_tokens: int = 0


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    extra = getattr(obj, "model_extra", None) or {}
    return getattr(obj, name, None) if hasattr(obj, name) else extra.get(name)


def read_usage(usage: Any) -> ReadUsage:
    """Every field DashScope (native or compatible mode) may use for input, output and visual tokens."""
    if usage is None:
        return ReadUsage(0, 0, None)
    inp = _int(_get(usage, "input_tokens"))
    if inp is None:
        inp = _int(_get(usage, "prompt_tokens"))
    out = _int(_get(usage, "output_tokens"))
    if out is None:
        out = _int(_get(usage, "completion_tokens"))
    visual: int | None = None
    for where in (usage, _get(usage, "input_tokens_details"), _get(usage, "prompt_tokens_details")):
        if where is None:
            continue
        found = [_int(_get(where, name)) for name in ("video_tokens", "image_tokens")]
        if any(v is not None for v in found):
            visual = sum(v or 0 for v in found)
            break
    cached = 0
    for where in (_get(usage, "prompt_tokens_details"), _get(usage, "input_tokens_details")):
        if where is not None and _int(_get(where, "cached_tokens")):
            cached = _int(_get(where, "cached_tokens")) or 0
            break
    return ReadUsage(inp or 0, out or 0, visual, cached)


@dataclass(frozen=True, slots=True)
class FrameBudget:
    max_pixels: int
    factor: int


def frame_budget(model: str | None, sampling_max_pixels: int, request_max_pixels: int | None) -> FrameBudget:
    """The size frames are written at for ``model`` (None: no model, 32-px sides, sampling's budget)."""
    if model is None:
        return FrameBudget(sampling_max_pixels, 32)
    limits = limits_for(model)
    caps = [sampling_max_pixels, limits.video_max_pixels]
    if request_max_pixels:
        caps.append(request_max_pixels)
    return FrameBudget(max(limits.factor**2 * 4, min(caps)), limits.factor)


def price_for(model: str | None, prices: Mapping[str, Any]) -> Any | None:
    """The price entry whose key is the longest prefix of ``model`` (None if no entry matches)."""
    if not model:
        return None
    name = model.lower()
    best = max((k for k in prices if name.startswith(k.lower())), key=len, default=None)
    return prices[best] if best is not None else None


def cost(
    model: str | None, input_tokens: int, output_tokens: int, cached_tokens: int, prices: Mapping[str, Any]
) -> float | None:
    """Money for these tokens at ``prices[model]`` (per million tokens); None when the model has no price."""
    price = price_for(model, prices)
    if price is None:
        return None
    fresh = max(0, input_tokens - cached_tokens)
    total = fresh * price.input + cached_tokens * price.cached + output_tokens * price.output
    return round(float(total) / 1_000_000, 6)
