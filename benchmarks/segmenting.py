"""Segmenters side by side on generated videos with known truth, against the loopback DashScope fake.

    python -m benchmarks.segmenting [--quick] [--json FILE]

Two videos are generated (tests/media.py ``make_video``): one with hard cuts at known times (a disc moves
in every frame), one from a still camera with short known motion events. Each runs through
``fixed``, ``scene``, ``hybrid`` and ``motion`` with the real DashScope describer (real SDK) against
``FakeDashScope``, which bills video tokens by the documented formula. Reported per run: model calls,
video tokens, wall time (and the analysis pass's share), cut recall/precision (a true cut found within
±1 frame), the fraction of described segments spanning a true cut, and the known events that lie
inside a described segment. Two more rows show gating on the still camera (hybrid with near-duplicate
dropping and reuse) and a re-run of the same job (description cache).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.fakes.dashscope_server import FakeDashScope
from tests.media import VideoTruth, make_video
from worker.bootstrap import build_ports
from worker.config import Settings, load_settings
from worker.core.segmenters import Findings
from worker.options import JobOptions
from worker.service import pipeline
from worker.service import plan as segmenting

KEY = "sk-benchmark-0000"


@dataclass
class Row:
    video: str
    run: str
    segments: int
    described: int
    calls: int
    video_tokens: int
    tokens_vs_fixed: str
    wall_s: float
    analysis_s: float
    cut_recall: str
    cut_precision: str
    spanning: str
    events_inside: str


def videos(folder: Path, quick: bool) -> dict[str, VideoTruth]:
    scale = 0.5 if quick else 1.0
    folder.mkdir(parents=True, exist_ok=True)
    cuts = tuple(round(c * scale, 2) for c in (4.0, 9.4, 17.0, 21.52, 30.0, 38.2, 44.0, 52.6))
    events = tuple((round(s * scale, 1), round(s * scale, 1) + d) for s, d in ((30, 2.5), (95, 4), (170, 3), (250, 2)))
    return {
        "cuts": make_video(
            folder / "cuts.mp4", seconds=60 * scale, fps=25, size=(640, 360), cuts_at=cuts, codec="libx264"
        ),
        "camera": make_video(
            folder / "camera.mp4", seconds=300 * scale, fps=15, size=(640, 360), motion_events=events,
            static=True, noise=2, codec="libx264",
        ),
    }  # fmt: skip


@contextmanager
def spy_analysis() -> Iterator[dict[str, Any]]:
    """Capture the findings and duration of the job's own analysis pass (no second decode)."""
    seen: dict[str, Any] = {}
    original = segmenting.analyse

    def analyse(*args: Any, **kwargs: Any) -> Findings | None:
        started = time.monotonic()
        found = original(*args, **kwargs)
        seen["findings"], seen["seconds"] = found, time.monotonic() - started
        return found

    segmenting.analyse = analyse  # type: ignore[assignment]
    try:
        yield seen
    finally:
        segmenting.analyse = original  # type: ignore[assignment]


def settings_for(folder: Path, fake: FakeDashScope, **sampling: Any) -> Settings:
    return load_settings(
        data_dir=folder,
        describer={"kind": "dashscope", "concurrency": 4},
        dashscope={"api_key": KEY, "base_url": fake.base_http_api_url},
        sampling={"fps": 1, "segment_seconds": 10, **sampling},
    )


def cut_scores(truth: VideoTruth, findings: Findings | None) -> tuple[str, str]:
    if findings is None:
        return "—", "—"
    found = [round(c * truth.fps / 1000) for c in findings.cuts_ms]
    real = truth.cut_frames
    if not real:
        return "—", f"{len(found)} false" if found else "—"
    recall = sum(any(abs(f - t) <= 1 for f in found) for t in real) / len(real)
    precision = sum(any(abs(f - t) <= 1 for t in real) for f in found) / len(found) if found else 0.0
    return f"{recall:.0%}", f"{precision:.0%}"


def job(
    name: str, label: str, truth: VideoTruth, settings: Settings, fake: FakeDashScope,
    **opts: Any,
) -> tuple[Row, str, Any]:  # fmt: skip
    fake.reset()
    ports = build_ports(settings)
    created, _ = ports.store.create_job(str(truth.path), truth.path.name, JobOptions.parse(opts).stored())
    with spy_analysis() as seen:
        started = time.monotonic()
        summary = pipeline.run_inline(ports, created.id)
        wall = time.monotonic() - started
    rows = list(ports.store.segment_rows(created.id))
    described = [r for r in rows if r.state in ("done", "reused")]
    frame_ms = 1000 / truth.fps
    spanning = sum(
        any(r.start_ms + frame_ms < c * 1000 < r.end_ms - frame_ms for c in truth.cuts_at) for r in described
    )
    inside = sum(
        any(r.start_ms <= s * 1000 and e * 1000 <= r.end_ms for r in described) for s, e in truth.motion_events
    )
    recall, precision = cut_scores(truth, seen.get("findings"))
    row = Row(
        video=name,
        run=label,
        segments=len(rows),
        described=len(described),
        calls=len([r for r in fake.requests_of("generation") if r.videos]),
        video_tokens=sum(r.video_tokens for r in rows),
        tokens_vs_fixed="",
        wall_s=round(wall, 2),
        analysis_s=round(seen.get("seconds", 0.0), 2),
        cut_recall=recall,
        cut_precision=precision,
        spanning=f"{spanning}/{len(described)}" if truth.cuts_at else "—",
        events_inside=f"{inside}/{len(truth.motion_events)}" if truth.motion_events else "—",
    )
    return row, created.id, summary


def benchmark(folder: Path, quick: bool) -> list[Row]:
    media = videos(folder / "media", quick)
    out: list[Row] = []
    with FakeDashScope() as fake:
        for name, truth in media.items():
            fixed_tokens = 0
            for seg in ("fixed", "scene", "hybrid", "motion"):
                settings = settings_for(folder / f"{name}-{seg}", fake)
                row, _, _ = job(name, seg, truth, settings, fake, segmenter=seg)
                fixed_tokens = fixed_tokens or row.video_tokens
                out.append(row)
            if name == "camera":  # gating without the motion segmenter, then a re-run from the cache
                gated = settings_for(folder / "camera-gated", fake, dedup_hash_distance=4, reuse_hash_distance=4)
                row, _, _ = job(name, "hybrid+dedup+reuse", truth, gated, fake, segmenter="hybrid")
                out.append(row)
                row, _, _ = job(name, "hybrid+dedup+reuse, re-run", truth, gated, fake, segmenter="hybrid")
                out.append(row)
            for row in out:
                if row.video == name:
                    row.tokens_vs_fixed = f"{row.video_tokens / fixed_tokens - 1:+.0%}" if fixed_tokens else "—"
    return out


def table(rows: list[Row]) -> str:
    head = (
        "| video | run | segments | described | calls | video tokens | vs fixed | wall s | analysis s "
        "| cut recall | cut precision | segments spanning a cut | events inside |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        lines.append(
            f"| {r.video} | {r.run} | {r.segments} | {r.described} | {r.calls} | {r.video_tokens} | "
            f"{r.tokens_vs_fixed} | {r.wall_s:.2f} | {r.analysis_s:.2f} | {r.cut_recall} | {r.cut_precision} | "
            f"{r.spanning} | {r.events_inside} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.segmenting", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="half-length videos")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    with tempfile.TemporaryDirectory(prefix="fs-bench-seg-") as tmp:
        rows = benchmark(Path(tmp), args.quick)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
