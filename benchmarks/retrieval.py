"""``python -m benchmarks.retrieval [--smoke] [--out F]``: retrieval quality and exact-cosine latency (issue 17).

1. recall@5 of ``text``, ``semantic`` and ``hybrid`` search on the project's retrieval set
   (benchmarks/data/retrieval_set.json: 30 described segments, 33 queries, most of them paraphrases, plus
   300 generated distractor segments), with the offline MiniLM embedder.
2. Semantic query latency over 10k and 100k stored segments (SQLite, 384-dimensional vectors): the whole
   ``search(mode="semantic")`` call (scan of the filtered candidates from the store + exact cosine), and the
   matrix product alone; the query's embedding time is reported separately.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from benchmarks.common import machine
from worker.adapters.stores.sql import SqlResultStore
from worker.core.models import Description, SegmentPlan, VideoInfo
from worker.embedding import to_blob
from worker.indexing import reindex
from worker.retrieval import search

HERE = Path(__file__).resolve().parent
SET = HERE / "data" / "retrieval_set.json"
RESULTS = HERE / "retrieval_results.json"
K = 5
FILLER_SUBJECTS = ["A grey car", "A man", "A woman", "Two children", "A dog", "A bus", "A forklift", "A jogger",
                   "A taxi", "A pigeon", "An old man", "A lorry"]  # fmt: skip
FILLER_ACTIONS = ["walks slowly past", "stops briefly near", "turns left at", "waits beside", "moves away from",
                  "passes in front of", "circles around", "looks at"]  # fmt: skip
FILLER_PLACES = ["the corner", "the lamp post", "the shop window", "the crossing", "the wall", "the trees",
                 "the sign", "the railings", "the office door", "the stairs"]  # fmt: skip


class FixedQuery:
    """Latency runs: a stored-vector-sized query without running a model (its cost is measured apart)."""

    name = "bench/384"
    dim = 384

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def embed(self, texts: Any, *, query: bool = False) -> tuple[np.ndarray, int]:
        v = self.rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True), 0


def _job(store: SqlResultStore, name: str, items: list[dict[str, Any]]) -> str:
    job, _ = store.create_job(f"/bench/{name}", name, {})
    plans = [SegmentPlan(i, i * 10_000, (i + 1) * 10_000, Fraction(1), (i * 10_000,)) for i in range(len(items))]
    store.plan_job(job.id, VideoInfo(len(items) * 10_000, 25.0, 1, 640, 360, "avc1", 1), plans)
    for i, item in enumerate(items):
        store.claim_segment(job.id, i)
        store.save_segment(job.id, i, Description(item["text"], item.get("structured") or {}), [])
    return job.id


def fillers(n: int, seed: int = 17) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    return [{"text": f"{rnd.choice(FILLER_SUBJECTS)} {rnd.choice(FILLER_ACTIONS)} {rnd.choice(FILLER_PLACES)}.",
             "structured": {}} for _ in range(n)]  # fmt: skip


def recall(tmp: Path, n_fillers: int) -> dict[str, Any]:
    from worker.adapters.embedders.minilm import shared

    data = json.loads(SET.read_text(encoding="utf-8"))
    store = SqlResultStore(f"sqlite:///{tmp / 'recall.db'}")
    jobs = {name: _job(store, name, items) for name, items in data["sources"].items()}
    _job(store, "filler.mp4", fillers(n_fillers))
    emb = shared()
    t = time.perf_counter()
    seen, _ = reindex(store, emb)
    embed_s = time.perf_counter() - t
    out: dict[str, Any] = {"segments": seen, "queries": len(data["queries"]), "embed_all_s": round(embed_s, 2)}
    found_by: dict[str, list[bool]] = {}
    for mode in ("text", "semantic", "hybrid"):
        hits_ok = []
        for q, source, index in data["queries"]:
            hits = search(store, q, mode=mode, embedder=emb, limit=K)  # type: ignore[arg-type]
            hits_ok.append(any(h.job_id == jobs[source] and h.index == index for h in hits))
        found_by[mode] = hits_ok
        out[f"recall@{K}_{mode}"] = round(sum(hits_ok) / len(hits_ok), 3)
    out["paraphrases_semantic_finds_text_misses"] = sum(
        1 for s, t in zip(found_by["semantic"], found_by["text"], strict=True) if s and not t
    )
    store.close()
    return out


def _bulk(store: SqlResultStore, n: int, rng: np.random.Generator) -> str:
    """``n`` done segments with random unit vectors, inserted in bulk (one job)."""
    job, _ = store.create_job("/bench/large.mp4", "large.mp4", {})
    now = datetime.now(UTC)
    vecs = rng.standard_normal((n, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    with store.engine.begin() as c:
        c.execute(
            text('INSERT INTO segments (job_id, "index", start_ms, end_ms, fps, kind, planned_frames, state, '
                 "description, structured, input_tokens, output_tokens, video_tokens, latency_ms, attempts, "
                 "frame_count, updated_at) VALUES (:j, :i, :s, :e, '1', 'describe', 1, 'done', :d, '{}', 0, 0, 0, "
                 "0, 1, 0, :u)"),
            [{"j": job.id, "i": i, "s": i * 10_000, "e": (i + 1) * 10_000, "d": f"segment {i}", "u": now}
             for i in range(n)],
        )  # fmt: skip
        ids = [
            r[0] for r in c.execute(text('SELECT id FROM segments WHERE job_id = :j ORDER BY "index"'), {"j": job.id})
        ]
        c.execute(
            text("INSERT INTO segment_vectors (segment_id, job_id, embedder, dim, text_hash, vector, tokens, "
                 "updated_at) VALUES (:s, :j, 'bench/384', 384, 'x', :v, 0, :u)"),
            [{"s": sid, "j": job.id, "v": to_blob(vecs[k]), "u": now} for k, sid in enumerate(ids)],
        )  # fmt: skip
    return job.id


def latency(tmp: Path, sizes: list[int], reps: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(17)
    rows = []
    for n in sizes:
        store = SqlResultStore(f"sqlite:///{tmp / f'lat{n}.db'}")
        t = time.perf_counter()
        _bulk(store, n, rng)
        load_s = time.perf_counter() - t
        emb = FixedQuery(rng)
        search(store, "warm up", mode="semantic", embedder=emb, limit=10)  # type: ignore[arg-type]
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            hits = search(store, "query", mode="semantic", embedder=emb, limit=10)  # type: ignore[arg-type]
            times.append(time.perf_counter() - t)
            assert len(hits) == 10
        matrix = rng.standard_normal((n, 384)).astype(np.float32)
        q = matrix[0]
        t = time.perf_counter()
        for _ in range(reps):
            np.argpartition(-(matrix @ q), 10)
        dot_ms = (time.perf_counter() - t) / reps * 1000
        rows.append({"segments": n, "search_ms_median": round(statistics.median(times) * 1000, 1),
                     "search_ms_max": round(max(times) * 1000, 1), "cosine_only_ms": round(dot_ms, 2),
                     "bulk_load_s": round(load_s, 1)})  # fmt: skip
        store.close()
    return rows


def query_embedding_ms(reps: int) -> float:
    from worker.adapters.embedders.minilm import shared

    emb = shared()
    emb.embed(["warm up"], query=True)
    t = time.perf_counter()
    for _ in range(reps):
        emb.embed(["someone on a bike near the entrance"], query=True)
    return round((time.perf_counter() - t) / reps * 1000, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.retrieval", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    reps = 1 if args.smoke else 5
    with tempfile.TemporaryDirectory(prefix="fs-retrieval-") as d:
        tmp = Path(d)
        quality = recall(tmp, 20 if args.smoke else 300)
        lat = latency(tmp, [1_000] if args.smoke else [10_000, 100_000], reps)
    result = {"smoke": args.smoke, "machine": machine(), "recall": quality, "latency": lat,
              "query_embedding_ms": query_embedding_ms(reps)}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"retrieval set: {quality['segments']} segments, {quality['queries']} queries")
    for mode in ("text", "semantic", "hybrid"):
        print(f"  recall@{K} {mode:9s} {quality[f'recall@{K}_{mode}']:.3f}")
    print(f"  paraphrases found by semantic but missed by text: {quality['paraphrases_semantic_finds_text_misses']}")
    for row in lat:
        print(f"  exact cosine over {row['segments']:>7,} segments: search {row['search_ms_median']} ms median "
              f"(max {row['search_ms_max']}), matrix product alone {row['cosine_only_ms']} ms")  # fmt: skip
    print(f"  query embedding (MiniLM, NumPy): {result['query_embedding_ms']} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
