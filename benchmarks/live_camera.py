"""Live-camera figures on this machine (README "Live cameras"): ``python -m benchmarks.live_camera [--seconds 60]``.

Against real loopback servers (GStreamer's RTSP server fed by ffmpeg, Mosquitto on 127.0.0.1:1883):

1. segments per minute per camera, with three cameras watched at once in one process (10 s segments, 1 fps),
   and the process CPU per camera;
2. model calls saved by motion gating on a quiet camera (a still scene with a 4 s event every 24 s);
3. reconnect time after an RTSP server restart (drop -> first frame again; restart -> first frame).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

from tests.live_servers import RtspServer, make_clip
from worker.adapters.stores.sql import SqlResultStore
from worker.bootstrap import build_ports
from worker.config import load_settings
from worker.live.common import Counters
from worker.live.options import WatchOptions
from worker.live.source import check_live
from worker.live.store import LiveStore
from worker.live.watcher import Watcher


def quiet_with_event(path: Path) -> Path:
    """20 s of a still scene, then 4 s of motion (looped by the server: an event every 24 s)."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "color=c=gray:size=320x240:rate=10:d=20",
         "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10:d=4",
         "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


Run = tuple[Watcher, threading.Thread, list[Counters]]


def watch(tmp: Path, url: str, name: str, seconds: float, **opts: Any) -> Run:
    settings = load_settings(
        data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'bench.db'}", describer={"kind": "local"},
        live={"allow_cameras": ["127.0.0.1"], "read_timeout_s": 3, "backoff_initial_s": 0.2, "backoff_max_s": 2},
    )  # fmt: skip
    w = Watcher(build_ports(settings), name, check_live(url, ["127.0.0.1"]), WatchOptions.parse(opts))
    out: list[Counters] = []
    t = threading.Thread(target=lambda: out.append(w.run(seconds)), daemon=True)
    t.start()
    return w, t, out


def per_minute(w: Watcher) -> float:
    """Segments per minute of covered wall-clock time (a run ends at the first boundary after its duration)."""
    rows = list(LiveStore(cast(SqlResultStore, w.ports.store)).segments(w.job_id))
    span_ms = rows[-1].utc_end_ms - rows[0].utc_start_ms
    return len(rows) * 60_000 / span_ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        motion = make_clip(tmp / "motion.mp4", seconds=6)
        quiet = quiet_with_event(tmp / "quiet.mp4")
        servers = [RtspServer(motion, tmp / f"s{i}.log") for i in range(3)] + [RtspServer(quiet, tmp / "q.log")]
        for s in servers:
            s.start()
        try:
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            runs = [watch(tmp, s.url, f"bench-{i}", args.seconds, segment_seconds=10, fps=1)
                    for i, s in enumerate(servers[:3])]  # fmt: skip
            runs.append(watch(tmp, servers[3].url, "bench-quiet", args.seconds, segment_seconds=4, fps=1,
                              segmenter="motion"))  # fmt: skip
            for _, t, _ in runs:
                t.join(args.seconds + 60)
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
            per_min = [round(per_minute(w), 2) for w, _, _ in runs[:3]]
            quiet_c = runs[3][2][0]
            reconnects = []
            w, t, _ = watch(tmp, servers[0].url, "bench-restart", 40, segment_seconds=2, fps=2)
            time.sleep(6)
            for _ in range(3):
                servers[0].kill()
                servers[0].start()
                restarted = time.monotonic()
                before = len(w.counters.reconnect_s)
                while len(w.counters.reconnect_s) == before and time.monotonic() - restarted < 30:
                    time.sleep(0.05)
                reconnects.append((w.counters.reconnect_s[-1], time.monotonic() - restarted))
                time.sleep(4)
            w.stop()
            t.join(30)
        finally:
            for s in servers:
                s.stop()
    print(json.dumps({
        "seconds": args.seconds,
        "segments_per_minute_per_camera": per_min,
        "cameras_at_once": 4,
        "process_cpu_percent_per_camera": round(100 * cpu / args.seconds / 4, 1),
        "quiet_camera": {"segments": quiet_c.segments, "static_no_call": quiet_c.static,
                         "model_calls": quiet_c.described,
                         "calls_saved_pct": round(100 * quiet_c.static / max(1, quiet_c.segments))},
        "reconnect_drop_to_frame_s": [round(a, 2) for a, _ in reconnects],
        "reconnect_restart_to_frame_s": [round(b, 2) for _, b in reconnects],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
