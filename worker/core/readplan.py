"""Which way to read a video for a set of sample times: a pure cost model.

Costs are counted in "decoding one average frame". Decoding is the cost (shared/facts.md): a seek pays
for every frame from the keyframe before its target, sequential decoding pays for every frame between
targets, demuxing a packet without decoding it is ~5% of a decode, and a keyframe alone decodes fast.

Strategies:

* ``sequential``: decode every frame from the first target on (frames no other frame references are
  dropped unless kept, where the codec lets us tell);
* ``skip``: demux every packet but decode only the keyframe intervals that hold a target;
* ``seek``: jump to the keyframe before each target that lies beyond the next keyframe;
* ``keyframes``: decode only keyframes, each standing in for a target within the tolerance (the exact
  frame where no keyframe is close enough). With no tolerance, a keyframe that *is* the target's exact frame
  (the first frame at or after it, within half a source frame) is used: the same frames and times as exact
  decoding, at the cost of decoding keyframes alone (``exact_key_cover``).
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

SPACING_SAMPLE = 1000  # sample times looked at for their spacing


class Strategy(StrEnum):
    SEQUENTIAL = "sequential"
    SKIP = "skip"
    SEEK = "seek"
    KEYFRAMES = "keyframes"


# What each backend can do. OpenCV decodes whatever it grabs and has no keyframe flag.
BACKEND_STRATEGIES: dict[str, frozenset[Strategy]] = {
    "opencv": frozenset({Strategy.SEQUENTIAL, Strategy.SEEK}),
    "pyav": frozenset(Strategy),
}


@dataclass(frozen=True, slots=True)
class StreamFacts:
    """What demuxing (not decoding) told about a video stream."""

    fps: float
    keyframe_interval_ms: float | None  # median distance between keyframes; None when unknown
    nonref_fraction: float = 0.0  # share of frames no other frame references (droppable when not kept)


@dataclass(frozen=True, slots=True)
class Costs:
    """Relative costs, in average-frame decodes. Defaults measured on 2 cores, 720p30 H.264."""

    seek: float = 4.0  # one seek plus restarting the decoder's threads
    demux: float = 0.05  # reading one packet without decoding it (PyAV packet objects, buffering)
    keyframe: float = 2.5  # decoding a keyframe on its own
    nonref: float = 0.6  # a droppable frame's share of an average frame's cost
    opencv_backup_frames: int = 16  # OpenCV's seek lands this many frames early, often one keyframe early
    backend_factor: tuple[tuple[str, float], ...] = (("opencv", 1.0), ("pyav", 1.15))

    def factor(self, backend: str) -> float:
        return dict(self.backend_factor).get(backend, 1.0)


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """The chosen way to read, with the expected cost per target of every candidate considered."""

    backend: str
    strategy: Strategy
    tolerance_ms: int
    seek_gap_ms: float  # seek forward when the next target is further ahead than this
    expected: tuple[tuple[str, float], ...]  # ("backend/strategy", cost per target), cheapest first
    reason: str


def interval_ms(targets_ms: Sequence[int]) -> float | None:
    """Median spacing of sorted sample times; None for fewer than two."""
    if len(targets_ms) < 2:
        return None
    head = itertools.islice(targets_ms, SPACING_SAMPLE)  # a long lazy sequence is not walked to its end
    gaps = [b - a for a, b in itertools.pairwise(head) if b > a]
    return float(statistics.median(gaps)) if gaps else None


def tolerance_ms(targets_ms: Sequence[int], fraction: float) -> int:
    """The keyframe tolerance for these targets: ``fraction`` of their spacing (0 = exact frames)."""
    spacing = interval_ms(targets_ms)
    if fraction <= 0 or spacing is None:
        return 0
    return int(spacing * min(fraction, 0.5))


def exact_key_cover(targets_ms: Sequence[int], keyframes_ms: Sequence[float], frame_ms: float) -> float:
    """Share of targets whose exact frame is a keyframe: one within ``[t - 1, t - 1 + frame_ms / 2)``
    (1 ms of rounding, as the readers allow). ``keyframes_ms`` sorted; at most SPACING_SAMPLE targets looked at."""
    if not keyframes_ms or frame_ms <= 0:
        return 0.0
    half = frame_ms / 2
    seen = hits = 0
    for t in itertools.islice(targets_ms, SPACING_SAMPLE):
        seen += 1
        i = bisect.bisect_left(keyframes_ms, t - 1)
        hits += i < len(keyframes_ms) and keyframes_ms[i] < t - 1 + half
    return hits / seen if seen else 0.0


def median_interval(keyframes_ms: Iterable[float]) -> float | None:
    """Median distance between consecutive keyframe times (sorted first)."""
    ks = sorted(keyframes_ms)
    gaps = [b - a for a, b in itertools.pairwise(ks) if b > a]
    return float(statistics.median(gaps)) if gaps else None


def _partial_gop(n: float, g: float) -> float:
    """Frames decoded per target when targets ``n`` frames apart each need the decode from their keyframe
    (keyframes ``g`` frames apart): half a GOP when sparse, almost every frame when dense."""
    return g / 2 if n >= g else n * (1 - n / (2 * g))


def expected_costs(
    facts: StreamFacts,
    spacing_ms: float,
    tol_ms: float,
    backend: str,
    costs: Costs = Costs(),
    exact_cover: float = 0.0,
) -> dict[Strategy, float]:
    """Expected decode cost per target of each strategy ``backend`` supports. ``exact_cover``: the share of
    targets whose exact frame is a keyframe (``exact_key_cover``)."""
    f = facts.fps
    n = max(1.0, spacing_ms * f / 1000)  # frames between targets
    k = backend_factor = costs.factor(backend)
    droppable = facts.nonref_fraction if backend == "pyav" else 0.0
    r = backend_factor * (1 - droppable * costs.nonref)  # cost of an average frame in a run of frames
    out: dict[Strategy, float] = {Strategy.SEQUENTIAL: n * r}
    if facts.keyframe_interval_ms is None:
        return out  # without keyframe facts only the plain read is predictable
    g = max(1.0, facts.keyframe_interval_ms * f / 1000)
    allowed = BACKEND_STRATEGIES.get(backend, frozenset({Strategy.SEQUENTIAL}))
    decoded = _partial_gop(n, g)
    if Strategy.SEEK in allowed:
        if backend == "opencv":  # lands `b` frames early, so often one keyframe before its target
            b = min(float(costs.opencv_backup_frames), g)
            per_seek = (g - b) / g * ((g + b) / 2) + b / g * (b / 2 + g)
            out[Strategy.SEEK] = (per_seek + costs.seek) * k if n >= g else n * k
        else:
            out[Strategy.SEEK] = decoded * r + _travel(n, g, costs)
    if Strategy.SKIP in allowed:
        out[Strategy.SKIP] = decoded * r + _travel(n, _long_gap_frames(g, costs), costs)
    if Strategy.KEYFRAMES in allowed and (tol_ms > 0 or exact_cover > 0):
        cover = max(min(1.0, 2 * tol_ms / max(1.0, facts.keyframe_interval_ms)), min(1.0, exact_cover))
        travel = _travel(n, _long_gap_frames(g, costs), costs)
        out[Strategy.KEYFRAMES] = cover * costs.keyframe * k + (1 - cover) * (g / 2) * r + travel
    return out


def _long_gap_frames(g: float, costs: Costs) -> float:
    """Gap (in frames) beyond which the demuxing strategies seek too: see ``seek_gap_ms``."""
    return max(costs.seek / max(costs.demux, 1e-9), 2 * g)


def _travel(n: float, gap_frames: float, costs: Costs) -> float:
    """Getting from one target to the next without decoding: demux every packet, or seek past a long gap."""
    return n * costs.demux if n <= gap_frames else costs.seek


def choose(
    facts: StreamFacts,
    spacing_ms: float | None,
    tol_ms: int = 0,
    backends: Iterable[str] = ("pyav", "opencv"),
    costs: Costs = Costs(),
    exact_cover: float = 0.0,
) -> ReadPlan:
    """The cheapest (backend, strategy) for targets ``spacing_ms`` apart; ties go to the earlier backend."""
    names = [b for b in backends if b in BACKEND_STRATEGIES] or ["opencv"]
    spacing = spacing_ms if spacing_ms and spacing_ms > 0 else 1000 / max(facts.fps, 1e-9)
    ranked: list[tuple[float, int, str, Strategy]] = []
    for order, backend in enumerate(names):
        for strategy, cost in expected_costs(facts, spacing, tol_ms, backend, costs, exact_cover).items():
            ranked.append((cost, order, backend, strategy))
    ranked.sort(key=lambda x: (round(x[0], 6), x[1], list(Strategy).index(x[3])))
    cost, _, backend, strategy = ranked[0]
    gap = seek_gap_ms(facts, strategy, costs)
    g_txt = "unknown" if facts.keyframe_interval_ms is None else f"{facts.keyframe_interval_ms:.0f} ms"
    reason = (
        f"keyframes every {g_txt}, targets every {spacing:.0f} ms at {facts.fps:g} fps"
        f"{f', tolerance {tol_ms} ms' if tol_ms else ''}"
        f"{f', {exact_cover:.0%} of targets on keyframes' if exact_cover else ''}: "
        f"{backend}/{strategy} ≈ {cost:.1f} frame decodes per target"
    )
    return ReadPlan(
        backend=backend,
        strategy=strategy,
        tolerance_ms=tol_ms if strategy is Strategy.KEYFRAMES else 0,
        seek_gap_ms=gap,
        expected=tuple((f"{b}/{s}", round(c, 2)) for c, _, b, s in ranked),
        reason=reason,
    )


def seek_gap_ms(facts: StreamFacts, strategy: Strategy, costs: Costs = Costs()) -> float:
    """How far ahead the next target must be before a seek beats reading on.

    ``seek`` jumps past any keyframe interval; the others jump only once demuxing what lies between costs
    more than a seek (sequential reading still seeks once to reach a far first target)."""
    frame_ms = 1000 / max(facts.fps, 1e-9)
    if strategy is Strategy.SEEK:
        return facts.keyframe_interval_ms if facts.keyframe_interval_ms is not None else 5000.0
    demux_ms = costs.seek / max(costs.demux, 1e-9) * frame_ms
    floor = 2 * facts.keyframe_interval_ms if facts.keyframe_interval_ms is not None else 5000.0
    return max(demux_ms, floor)


def plan_for(
    facts: StreamFacts,
    targets_ms: Sequence[int],
    tol: int = 0,
    backends: Iterable[str] = ("pyav", "opencv"),
    strategy: Strategy | None = None,
    costs: Costs = Costs(),
    exact_cover: float = 0.0,
) -> ReadPlan:
    """``choose`` for concrete targets (``tol``: keyframe tolerance in ms, see ``tolerance_ms``); a forced
    ``strategy`` keeps the first backend that supports it."""
    spacing = interval_ms(targets_ms)
    if strategy is None:
        return choose(facts, spacing, tol, backends, costs, exact_cover)
    names = [b for b in backends if strategy in BACKEND_STRATEGIES.get(b, frozenset())]
    if not names:
        raise ValueError(f"no backend among {list(backends)} supports the {strategy} strategy")
    backend = names[0]
    cost = expected_costs(facts, spacing or 1000.0, tol, backend, costs, exact_cover).get(strategy, math.nan)
    return ReadPlan(
        backend=backend,
        strategy=strategy,
        tolerance_ms=tol if strategy is Strategy.KEYFRAMES else 0,
        seek_gap_ms=seek_gap_ms(facts, strategy, costs),
        expected=((f"{backend}/{strategy}", round(cost, 2)),),
        reason=f"{strategy} forced",
    )
