"""Goal 7: the measured per-segment costs turned into what N workers on M machines sustain, and where the
bottleneck moves (decode, DashScope calls, store writes). Store writes are measured here (SQLite, and
PostgreSQL when it answers on 127.0.0.1:5432); the rest comes from goals 1, 2 and 6 of the same run."""

from __future__ import annotations

import math
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.store_fixtures import temp_pg_database
from worker.adapters.stores.sql import SqlResultStore
from worker.core.models import Description, FrameRef, Usage, VideoInfo
from worker.core.segments import PlanParams, plan_segments

SEGMENT_S = 10.0  # the default segment length
FPS = 1.0  # the default sampling rate
CORES_PER_MACHINE = 2
UTILISATION = 0.7  # plan machines to run at most this busy
MODEL_LATENCY_S = 5.0  # assumed DashScope latency for one 10-frame call (not measured here)
DASHSCOPE_RPM_HINT = 600  # an assumed per-account requests/minute limit; check the account's real quota


@dataclass
class Costs:
    decode_core_s_per_video_s: float  # long GOP, every frame decoded (goal 1)
    keyframe_core_s_per_video_s: float  # keyframe fast path (goal 2)
    orchestration_worker_s_per_segment: float | None  # goal 6
    store_tx_per_s: dict[str, float]


def _pg_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def store_rate(url: str, segments: int) -> float:
    """Segment transactions per second (one segment row + its frame rows, as a worker stores them)."""
    store = SqlResultStore(url)
    try:
        info = VideoInfo(duration_ms=round(segments * SEGMENT_S * 1000), fps=30.0, frame_count=1, width=1280,
                         height=720, codec="avc1")  # fmt: skip
        params = PlanParams(fps=FPS, segment_seconds=SEGMENT_S, overlap_seconds=0.0, min_frames=4, max_frames=512)
        plans = list(plan_segments(info.duration_ms, info.fps, params))
        job, _ = store.create_job("/bench/video.mp4", "video.mp4", {})
        store.plan_job(job.id, info, plans)
        desc = Description("A test pattern scrolls across the frame.", {}, "dashscope", "qwen-vl-max-latest",
                           Usage(1000, 60, 900, "req", 10, 1))  # fmt: skip
        started = time.perf_counter()
        for p in plans:
            store.claim_segment(job.id, p.index)
            frames = [FrameRef(n, t, f"/data/f{n}.jpg", 832, 480, 50_000) for n, t in enumerate(p.targets_ms)]
            store.save_segment(job.id, p.index, desc, frames)
        return len(plans) / (time.perf_counter() - started)
    finally:
        store.close()


def measure_store(work: Path, segments: int) -> dict[str, float]:
    rates = {"sqlite": store_rate(f"sqlite:///{(work / 'scale.db').resolve()}", segments)}
    if _pg_answers():
        with temp_pg_database("fs_bench") as url:
            rates["postgresql"] = store_rate(url, segments)
    return rates


def plan_rows(costs: Costs, hours_per_day: list[float]) -> list[dict[str, Any]]:
    """What K hours of video a day needs, per resource, and which one binds first."""
    rows = []
    seg_per_video_s = 1 / SEGMENT_S
    for k in hours_per_day:
        video_s_per_s = k * 3600 / 86400  # video seconds arriving per wall second
        decode_cores = video_s_per_s * costs.decode_core_s_per_video_s
        key_cores = video_s_per_s * costs.keyframe_core_s_per_video_s
        calls_per_s = video_s_per_s * seg_per_video_s
        in_flight = calls_per_s * MODEL_LATENCY_S
        orchestration_cores = calls_per_s * (costs.orchestration_worker_s_per_segment or 0.0)
        machines = math.ceil((decode_cores + orchestration_cores) / (CORES_PER_MACHINE * UTILISATION))
        store_use = {name: calls_per_s / rate for name, rate in costs.store_tx_per_s.items() if rate > 0}
        busy = [n for n, u in store_use.items() if u >= 0.5]
        if busy and len(busy) == len(store_use):
            bottleneck = "store writes (every store over half busy: batch frame rows, shard jobs)"
        elif "sqlite" in busy:
            bottleneck = "SQLite writes (one writer): move the store to PostgreSQL"
        elif calls_per_s * 60 > DASHSCOPE_RPM_HINT:
            bottleneck = f"DashScope calls ({calls_per_s * 60:.0f}/min): the account's RPM limit, then decode"
        else:
            bottleneck = f"decode CPU: {max(1, machines)} machine(s) of {CORES_PER_MACHINE} cores"
        rows.append(
            {
                "hours_per_day": k,
                "decode_cores": round(decode_cores, 2),
                "keyframe_path_cores": round(key_cores, 3),
                "orchestration_cores": round(orchestration_cores, 3),
                "machines_2_cores": max(1, machines),
                "workers": max(1, machines) * CORES_PER_MACHINE,
                "calls_per_min": round(calls_per_s * 60, 1),
                "calls_in_flight": round(in_flight, 1),
                "store_utilisation": {n: round(u, 4) for n, u in store_use.items()},
                "bottleneck": bottleneck,
            }
        )
    return rows


def lines(costs: Costs, rows: list[dict[str, Any]]) -> list[str]:
    out = [
        f"G7 measured: decode {costs.decode_core_s_per_video_s * 3600:.0f} core-s per video hour at 1 fps "
        f"(long GOP), {costs.keyframe_core_s_per_video_s * 3600:.0f} on the keyframe path; orchestration "
        + (
            f"{costs.orchestration_worker_s_per_segment * 1000:.0f} ms per segment; "
            if costs.orchestration_worker_s_per_segment is not None
            else "not measured; "
        )
        + "store "
        + ", ".join(f"{n} {r:.0f} segments/s" for n, r in costs.store_tx_per_s.items())
    ]
    for r in rows:
        out.append(
            f"G7 {r['hours_per_day']:g} h of 720p video/day at 1 fps: {r['decode_cores']:.1f} cores decoding "
            f"({r['machines_2_cores']} machine(s) of 2 cores, {r['workers']} workers; keyframe path "
            f"{r['keyframe_path_cores']:.2f} cores), {r['calls_per_min']:.0f} DashScope calls/min "
            f"({r['calls_in_flight']:.0f} in flight at {MODEL_LATENCY_S:g} s each), store "
            + ", ".join(f"{n} {u:.1%} busy" for n, u in r["store_utilisation"].items())
        )
    out.append(
        "G7 bottleneck by volume: "
        + "; ".join(f"{r['hours_per_day']:g} h/day -> {r['bottleneck']}" for r in rows)
        + f" (model latency {MODEL_LATENCY_S:g} s and {DASHSCOPE_RPM_HINT} RPM are assumptions, not measured)"
    )
    return out
