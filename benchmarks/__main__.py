"""``python -m benchmarks [--smoke] [--reps N] [--only G1,G3,R3] [--out results.json]``.

Prints one ratio line per goal of issue 10 (G1-G7) and of issue 19 (R3, R4, R6 measured here; its goals
1, 2 and 5 are G2, G1 and G5) with its same-run baseline, a table of every measurement, and
writes them (with the machine they ran on) as JSON. ``--smoke`` runs every goal on tiny inputs, quickly:
it checks the benchmarks still work, its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from benchmarks import media, orchestration, pipelining, round2, sampling, scale
from benchmarks.common import REPO, Goal, Measure, compile_package, machine

RESULTS = Path(__file__).resolve().parent / "results.json"
BROKER_DB = 9  # this benchmark's Redis DBs: 9 (broker, limiter keys)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny inputs, one repetition (CI)")
    p.add_argument("--reps", type=int, default=None, help="repetitions per timing (default 3, smoke 1)")
    p.add_argument("--only", default="", help="comma-separated goals to run, e.g. G1,G3 (G7 needs G1,G2)")
    p.add_argument("--out", type=Path, default=None, help=f"JSON results (default {RESULTS.relative_to(REPO)})")
    p.add_argument("--media", type=Path, default=None, help="media cache folder (default benchmarks/.media)")
    return p.parse_args(argv)


def _guard(key: str, title: str, fn: Callable[[], tuple[Goal, list[Measure]]]) -> tuple[Goal, list[Measure]]:
    """A goal that breaks is reported as not measured, with the reason; the others still run."""
    try:
        return fn()
    except Exception as exc:  # a benchmark failure must not hide the other goals' figures
        traceback.print_exc(file=sys.stderr)
        return Goal(key, title, None, None, "-", "-", f"failed: {type(exc).__name__}: {exc}", measured=False), []


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    reps = args.reps or (1 if args.smoke else 3)
    specs = media.SMOKE if args.smoke else media.FULL
    media_dir = args.media or media.MEDIA_DIR
    out_path = args.out or RESULTS
    only = {g.strip().upper() for g in args.only.split(",") if g.strip()}

    def wanted(key: str) -> bool:
        return not only or key in only

    started = time.perf_counter()
    info = machine()
    print(f"machine: {info.get('cpus')} CPUs ({info.get('cpu', '?')}), load {info['load_average_at_start']}, "
          f"{info.get('ffmpeg', '')}", flush=True)  # fmt: skip

    t = time.perf_counter()
    files = {name: media.ensure(spec, media_dir) for name, spec in specs.items()}
    media_s = time.perf_counter() - t
    print(f"media ready in {media_s:.1f} s ({media_dir})", flush=True)
    label = {name: spec.describe() for name, spec in specs.items()}

    compile_package()  # children import worker/ from byte-code, as an installed package does
    work = Path(tempfile.mkdtemp(prefix="fs-bench-"))
    goals: list[Goal] = []
    measures: list[Measure] = []

    def record(result: tuple[Goal, list[Measure]]) -> Goal:
        goal, ms = result
        for m in ms:
            m.name = f"{goal.key} {m.name}"
        goals.append(goal)
        measures.extend(ms)
        print(goal.line(), flush=True)
        return goal

    try:
        g1 = g2 = None
        by_name: dict[str, Measure] = {}
        if wanted("G1") or wanted("G7"):
            run1 = partial(sampling.goal1, files["long_gop"], label["long_gop"], work / "g1", reps)
            g1 = record(_guard("G1", "sample+JPEG 1 fps", run1))
        if wanted("G2") or wanted("G7"):
            run2 = partial(sampling.goal2, files["short_gop"], label["short_gop"], work / "g2", reps)
            g2 = record(_guard("G2", "keyframe fast path", run2))
        if wanted("G3"):
            sparse = {"GOP 250": files["long_gop"], "GOP 30": files["short_gop"]}
            reps3, seconds3 = (reps, 20.0) if args.smoke else (reps + 2, 40.0)  # short runs: more repetitions
            run3 = partial(sampling.goal3, sparse, reps3, seconds3)
            record(_guard("G3", "sparse sampling", run3))
        if wanted("G4"):
            mem = (label["mem_short"], label["mem_long"])
            run4m = partial(sampling.goal4, files["mem_short"], files["mem_long"], mem, work / "g4")
            record(_guard("G4", "peak RSS", run4m))
        if wanted("G5"):
            scenarios = (
                [pipelining.Scenario(0.3, 2), pipelining.Scenario(0.02, 2)]
                if args.smoke
                else [pipelining.Scenario(2.5, 4), pipelining.Scenario(0.1, 4)]
            )
            # the whole 120 s file: 24 segments of 5 s, 6 rounds of C=4 calls (pipelining.py: why not 60 s)
            seg_s, fps, end = (2.0, 2.0, None) if args.smoke else (5.0, 1.0, None)
            run5 = partial(pipelining.goal5, files["long_gop"], work / "g5", scenarios, seg_s, fps, reps, end)
            record(_guard("G5", "pipelining", run5))
        g6 = None
        if wanted("G6") or wanted("G7"):
            clips = [files["clip"]] * (2 if args.smoke else 16)
            g6 = record(
                _guard("G6", "orchestration", partial(orchestration.goal6, clips, work / "g6", BROKER_DB, reps=reps))
            )
        if wanted("R3"):
            record(_guard("R3", "quick commands", partial(round2.startup, work, reps)))
        if wanted("R4"):
            r4_seconds = 6.0 if args.smoke else 60.0
            run4 = partial(round2.no_work_twice, files["long_gop"], work, r4_seconds, reps)
            record(_guard("R4", "no work twice", run4))
        if wanted("R6"):
            run6 = partial(round2.under_load, files["long_gop"], label["long_gop"], work / "r6", reps)
            record(_guard("R6", "under load", run6))
        by_name = {m.name: m for m in measures}
        if wanted("G7"):
            _scale(goals, by_name, files, specs, work, args.smoke, g1, g2, g6)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    total = time.perf_counter() - started
    print()
    print(f"{'measurement':<72} {'median s':>9} {'reps':>4} {'peak MiB':>9}  note")
    for m in measures:
        rss = f"{m.rss:9.0f}" if m.peak_rss_mib else " " * 9
        print(f"{m.name[:72]:<72} {m.median:9.3f} {len(m.seconds):4d} {rss}  {m.note}")
    print()
    for g in goals:
        print(g.line())
    print()
    for line in round2.round2_lines({g.key: g for g in goals}):
        print(line)
    print(f"total {total:.0f} s (media {media_s:.0f} s); results in {out_path}")
    payload = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "repetitions": reps,
        "seconds": round(total, 1),
        "media_seconds": round(media_s, 1),
        "machine": info,
        "media": {name: spec.filename for name, spec in specs.items()},
        "goals": [g.as_dict() for g in goals],
        "issue19": round2.round2_lines({g.key: g for g in goals}),
        "measurements": [m.as_dict() for m in measures],
        "scale": getattr(_scale, "rows", []),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


def _scale(
    goals: list[Goal],
    by_name: dict[str, Measure],
    files: dict[str, Path],
    specs: dict[str, media.Spec],
    work: Path,
    smoke: bool,
    g1: Goal | None,
    g2: Goal | None,
    g6: Goal | None,
) -> None:
    """Goal 7 from the figures of goals 1, 2 and 6 plus a store-write measurement."""
    try:
        seq = by_name.get("G1 framescribe sample --fps 1")
        key = by_name.get("G2 framescribe sample --fps 1 --keyframes")
        if seq is None or key is None:
            raise RuntimeError("goals 1 and 2 did not produce figures")
        cores = 2
        decode = sampling.in_process_median(seq) * cores / specs["long_gop"].seconds
        keyframes = sampling.in_process_median(key) * cores / specs["short_gop"].seconds
        orch = None
        if g6 is not None and g6.measured and g6.ratio is not None:
            orch = max(0.0, g6.ratio * 50 / 1000)
        store = scale.measure_store(work, 50 if smoke else 300)
        costs = scale.Costs(decode, keyframes, orch, store)
        rows = scale.plan_rows(costs, [100, 1000, 10_000])
        _scale.rows = rows  # type: ignore[attr-defined]
        text = scale.lines(costs, rows)
        for line in text:
            print(line, flush=True)
        goals.append(Goal("G7", "scale on paper", None, None, "measured per-segment costs", "see G7 lines",
                          " | ".join(text[1:-1])))  # fmt: skip
    except Exception as exc:  # report, do not hide the other goals
        traceback.print_exc(file=sys.stderr)
        goals.append(Goal("G7", "scale on paper", None, None, "-", "-", f"failed: {exc}", measured=False))
    print(goals[-1].line(), flush=True)


if __name__ == "__main__":
    sys.exit(main())
