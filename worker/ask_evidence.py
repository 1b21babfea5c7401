"""Evidence for ``ask``: retrieval (structured facts, words, meaning) and "look again" with Qwen-VL.

Counting and "when" questions stated as facts ("2 or more people") are answered from stored fields:
the matching segments are listed by code and their count is computed, never read from prose.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from worker.adapters.stores.sql import SqlResultStore
from worker.adapters.stores.vectors import Filters
from worker.core.models import FrameRef, SegmentPlan, Usage
from worker.core.ports import DescribeRequest
from worker.core.search import SearchHit, terms
from worker.core.where import Condition
from worker.embedding import Embedder, rrf
from worker.errors import FramescribeError, InputError
from worker.retrieval import search

log = logging.getLogger(__name__)
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "did",
        "do",
        "does",
        "has",
        "have",
        "had",
        "when",
        "what",
        "where",
        "who",
        "whom",
        "which",
        "why",
        "how",
        "there",
        "their",
        "they",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "any",
        "some",
        "into",
        "near",
        "about",
        "after",
        "before",
        "during",
        "did",
        "ever",
        "show",
        "me",
        "tell",
        "find",
        "footage",
        "video",
        "clip",
        "segment",
        "segments",
        "moment",
        "moments",
        "time",
        "times",
        "happen",
        "happened",
        "happens",
        "see",
        "seen",
        "seem",
        "i",
        "we",
        "you",
        "your",
        "our",
    ]
)
VISUAL = re.compile(
    r"\b(colou?rs?|wear(?:s|ing)?|clothes|clothing|shirt|jacket|coat|hat|look(?:s|ed)? like|what kind|brand|logo|"
    r"make|model of|licen[cs]e|plate|number|written|text|sign|carry(?:ing)?|holding|hair|shape)\b",
    re.IGNORECASE,
)
LISTED = 200  # segments a counting question lists at most


@dataclass(frozen=True, slots=True)
class Evidence:
    job_id: str
    source_name: str
    index: int
    start_ms: int
    end_ms: int
    text: str
    kind: str = "segment"  # segment | look_again
    thumb_path: str | None = None
    thumb_n: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        return self.job_id, self.index

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "source_name": self.source_name,
            "index": self.index,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "text": self.text,
            "kind": self.kind,
            "thumb_path": self.thumb_path,
            "thumb_n": self.thumb_n,
        }


def keywords(question: str) -> list[str]:
    return [t for t in terms(question) if t.lower() not in STOPWORDS and not t.isdigit()][:6]


def _evidence(hit: SearchHit) -> Evidence:
    return Evidence(
        hit.job_id,
        hit.source_name,
        hit.index,
        hit.start_ms,
        hit.end_ms,
        " ".join((hit.description or hit.snippet).split()),
        "segment",
        hit.thumb_path,
        hit.thumb_n,
    )


def gather(
    store: SqlResultStore,
    question: str,
    filters: Filters,
    where: Sequence[Condition],
    embedder: Embedder | None,
    k: int,
    min_similarity: float,
) -> tuple[list[Evidence], int | None]:
    """(evidence, how many segments match ``where`` — None without conditions), best first."""
    if where:
        listed = search(store, "", filters=filters, where=where, limit=LISTED)
        return [_evidence(h) for h in listed[:k]], len(listed)
    rankings: list[list[tuple[str, int]]] = []
    hits: dict[tuple[str, int], SearchHit] = {}
    words = keywords(question)
    queries = ([" ".join(words)] if len(words) > 1 else []) + words
    for q in queries:
        try:
            found = search(store, q, mode="text", filters=filters, limit=k * 2)
        except InputError:
            continue
        rankings.append([(h.job_id, h.index) for h in found])
        hits.update({(h.job_id, h.index): h for h in found})
    if embedder is not None and terms(question):
        sem = [
            h
            for h in search(store, question, mode="semantic", filters=filters, embedder=embedder, limit=k * 2)
            if h.score >= min_similarity
        ]
        rankings.append([(h.job_id, h.index) for h in sem])
        hits.update({(h.job_id, h.index): h for h in sem if (h.job_id, h.index) not in hits})
    fused = rrf(rankings)
    return [_evidence(hits[key]) for key, _ in fused[:k]], None


def wants_look_again(question: str) -> bool:
    return bool(VISUAL.search(question))


def look_again(
    store: SqlResultStore, describer: Any, question: str, items: Sequence[Evidence], prompt: str, settings: Any
) -> tuple[list[Evidence], Usage]:
    """Re-ask Qwen-VL with each segment's stored frames (re-sampled when retention deleted them) at the
    true sampling rate; each reply becomes evidence with the segment's times."""
    from worker.core.prompts import render
    from worker.core.timecode import clock

    found: list[Evidence] = []
    usage = Usage(attempts=0)
    for ev in items:
        row = store.segment(ev.job_id, ev.index)
        fps = float(Fraction(row.fps or "1"))
        frames = _frames(store, ev, settings)
        if len(frames) < 4:
            log.info("look again: segment %d of job %s has %d frames; skipped", ev.index, ev.job_id, len(frames))
            continue
        plan = SegmentPlan(ev.index, ev.start_ms, ev.end_ms, Fraction(row.fps or "1"), tuple(f.t_ms for f in frames))
        text = render(
            prompt, {"question": question, "start": clock(ev.start_ms), "end": clock(ev.end_ms), "fps": f"{fps:g}"}
        )
        request = DescribeRequest(
            job_id=ev.job_id,
            source_name=ev.source_name,
            plan=plan,
            frames=frames,
            fps=fps,
            prompt=text,
            system_prompt="You look closely at video frames and answer exactly.",
            preset="describe",
        )
        try:
            desc = describer.describe(request)
        except FramescribeError as exc:
            log.warning("look again at job %s segment %d failed: %s", ev.job_id, ev.index, exc.message)
            continue
        usage = usage + desc.usage
        found.append(
            Evidence(
                ev.job_id,
                ev.source_name,
                ev.index,
                ev.start_ms,
                ev.end_ms,
                " ".join(desc.text.split()),
                "look_again",
                ev.thumb_path,
                ev.thumb_n,
            )
        )
    return found, usage


def _frames(store: SqlResultStore, ev: Evidence, settings: Any) -> list[FrameRef]:
    frames = store.frames(ev.job_id, ev.index)
    if frames and all(Path(f.path).is_file() for f in frames):
        return frames
    try:  # retention deleted them: sample the segment again from its source, at the same times
        from worker.bootstrap import build_ports
        from worker.service.plan import options_of, plan_of_row
        from worker.service.segment import sample_segment

        ports = build_ports(settings)
        job = store.get_job(ev.job_id)
        plan = plan_of_row(store, ev.job_id, ev.index)
        with ports.open_source(job) as reader:
            folder = ports.frames.folder(ev.job_id, ev.index)
            sampled = sample_segment(ports, reader, plan, folder, options_of(job))
        return list(sampled.frames)
    except (FramescribeError, OSError) as exc:
        log.info("look again: cannot re-sample job %s segment %d: %s", ev.job_id, ev.index, exc)
        return []
