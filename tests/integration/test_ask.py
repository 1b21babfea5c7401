"""``ask`` against the loopback DashScope fake through the unmodified SDK, and offline.

Grounding is checked by code: a citation outside the evidence is removed and reported; no evidence means
no model call; "look again" sends the segment's stored frames at the rate they were sampled at."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.fakes.dashscope_server import Behavior, FakeDashScope
from worker.adapters.stores.sql import SqlResultStore
from worker.adapters.stores.vectors import Filters, VectorStore
from worker.ask import EXTRACTIVE_LABEL, NO_EVIDENCE, ask, build
from worker.config import Settings, load_settings
from worker.core.models import Description, FrameRef, SegmentPlan, VideoInfo
from worker.indexing import reindex

INFO = VideoInfo(60_000, 25.0, 1500, 640, 360, "avc1", 1)
TEXTS = [
    ("An empty car park in daylight; nothing moves.", {"people": [], "vehicles": [], "threat_level": 0}),
    ("A white van parks near the entrance and the driver unloads boxes.",
     {"people": ["driver"], "vehicles": ["white van"], "threat_level": 0}),
    ("Two people argue beside the gate, then one climbs the fence.",
     {"people": ["man in red", "woman"], "vehicles": [], "threat_level": 2}),
]  # fmt: skip


@pytest.fixture
def fake() -> Iterator[FakeDashScope]:
    with FakeDashScope() as f:
        yield f


def _settings(tmp_path: Path, fake: FakeDashScope | None, **ask: Any) -> Settings:
    ds = {"api_key": "sk-test", "base_url": fake.base_http_api_url, "max_attempts": 1} if fake else {}
    return load_settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'fs.db'}",
                         describer={"kind": "local"}, dashscope=ds, ask={"embedder": "dashscope" if fake else "none",
                                                                          "embed_dimension": 256, **ask})  # fmt: skip


def _seed(store: SqlResultStore, tmp_path: Path, options: dict[str, Any] | None = None) -> str:
    """Three 10 s segments sampled at 0.5 fps (5 frames each, real JPEGs on disk)."""
    job, _ = store.create_job("/v/gate.mp4", "gate.mp4", options or {})
    plans = [SegmentPlan(i, i * 10_000, (i + 1) * 10_000, Fraction(1, 2), (i * 10_000,)) for i in range(3)]
    store.plan_job(job.id, INFO, plans)
    for i, (text, structured) in enumerate(TEXTS):
        frames = []
        for n in range(5):
            path = tmp_path / f"f{i}_{n}.jpg"
            cv2.imwrite(str(path), np.full((64, 96, 3), 40 * n + i, np.uint8))
            frames.append(FrameRef(n, i * 10_000 + n * 2000, str(path), 96, 64, path.stat().st_size))
        store.claim_segment(job.id, i)
        store.save_segment(job.id, i, Description(text, structured), frames)
    return job.id


def test_answer_cites_evidence_and_a_citation_outside_it_is_removed(tmp_path: Path, fake: FakeDashScope) -> None:
    settings = _settings(tmp_path, fake, look_again=False)
    store = SqlResultStore(settings.resolved_database_url)
    job = _seed(store, tmp_path)
    embedder, answerer, _looker, prompts = build(settings)
    assert embedder is not None and answerer is not None
    reindex(store, embedder)
    fake.reset()
    fake.reply_fn = lambda rec: "A white van parked by the entrance [00:10–00:20], it left at [00:45]."
    deltas: list[str] = []
    result = ask(store, settings, "when did a van park near the entrance?", filters=Filters(job=job),
                 embedder=embedder, answerer=answerer, prompts=prompts,
                 on_event=lambda k, d: deltas.append(d["text"]) if k == "delta" else None)  # fmt: skip
    assert result.kind == "model" and result.written_by_model and result.model == "qwen-plus"
    assert result.answer == "A white van parked by the entrance [00:10–00:20], it left at."
    assert [(c["text"], c["index"], c["job_id"]) for c in result.citations] == [("[00:10–00:20]", 1, job)]
    assert [c["text"] for c in result.unsupported_citations] == ["[00:45]"]
    assert "".join(deltas).startswith("A white van parked"), "the answer streamed as it was written"
    gen = fake.text_generations()[-1]
    assert gen.model == "qwen-plus" and "[00:10–00:20] (gate.mp4) A white van parks" in (gen.prompt or "")
    assert "Cite every moment" in (gen.system or "")
    assert {r.kind for r in fake.requests} == {"embedding", "generation"}
    rec = VectorStore(store).ask_usage(job)
    assert rec["calls"] == 1 and rec["input_tokens"] == result.usage["input_tokens"] > 0


def test_no_evidence_means_no_model_call(tmp_path: Path, fake: FakeDashScope) -> None:
    settings = _settings(tmp_path, fake)
    store = SqlResultStore(settings.resolved_database_url)
    job = _seed(store, tmp_path)
    embedder, answerer, looker, prompts = build(settings)
    reindex(store, embedder)  # type: ignore[arg-type]
    fake.reset()
    result = ask(store, settings, "did a helicopter land on the roof?", filters=Filters(job=job),
                 embedder=embedder, answerer=answerer, looker=looker, prompts=prompts)  # fmt: skip
    assert result.kind == "no_evidence" and result.answer == NO_EVIDENCE and result.evidence == []
    assert fake.requests_of("generation") == []


def test_look_again_sends_the_stored_frames_with_the_true_fps(tmp_path: Path, fake: FakeDashScope) -> None:
    settings = _settings(tmp_path, fake, look_again_segments=1)
    store = SqlResultStore(settings.resolved_database_url)
    job = _seed(store, tmp_path)
    embedder, answerer, looker, prompts = build(settings)
    reindex(store, embedder)  # type: ignore[arg-type]
    fake.reset()

    def reply(rec: Any) -> str:
        if rec.videos:  # the look-again call to Qwen-VL (frames), not the text answer
            return "The van is white with a blue stripe."
        return "The van was white with a blue stripe [00:12]."

    fake.reply_fn = reply
    result = ask(store, settings, "what colour was the van that parked?", filters=Filters(job=job),
                 embedder=embedder, answerer=answerer, looker=looker, prompts=prompts)  # fmt: skip
    (vl,) = [r for r in fake.requests_of("generation") if r.videos]
    assert vl.fps == 0.5, "the true sampling rate, not a default"
    expected = [(tmp_path / f"f1_{n}.jpg").read_bytes() for n in range(5)]
    assert vl.frames == [expected], "the stored frames of the top segment, in order"
    assert "what colour was the van" in (vl.prompt or "")
    looked = [e for e in result.evidence if e.kind == "look_again"]
    assert [(e.index, e.text) for e in looked] == [(1, "The van is white with a blue stripe.")]
    assert "looked again" in (fake.text_generations()[-1].prompt or "")
    assert result.citations[0]["index"] == 1 and result.usage["video_tokens"] > 0 and result.usage["calls"] == 2


def test_offline_answer_is_extractive_and_labelled(tmp_path: Path) -> None:
    settings = _settings(tmp_path, None)
    store = SqlResultStore(settings.resolved_database_url)
    job = _seed(store, tmp_path)
    embedder, answerer, looker, prompts = build(settings)
    assert answerer is None and looker is None
    result = ask(store, settings, "when did the van park?", embedder=embedder, prompts=prompts)
    assert result.kind == "extractive" and not result.written_by_model
    assert result.answer.startswith(EXTRACTIVE_LABEL) and "[00:10–00:20] gate.mp4: A white van parks" in result.answer
    assert result.unsupported_citations == [] and result.citations[0]["index"] == 1
    counted = ask(store, settings, "segments with 2 or more people", filters=Filters(job=job))
    assert counted.where == ["people>=2"] and counted.matching_segments == 1
    assert [e.index for e in counted.evidence] == [2]


def test_spent_job_budget_means_no_model_call(tmp_path: Path, fake: FakeDashScope) -> None:
    settings = _settings(tmp_path, fake, embedder="none")
    store = SqlResultStore(settings.resolved_database_url)
    job = _seed(store, tmp_path, {"max_calls": 1})
    with store.engine.begin() as c:  # the job already made its one call
        from sqlalchemy import text

        c.execute(text('UPDATE segments SET attempts = 1 WHERE job_id = :j AND "index" = 0'), {"j": job})
    embedder, answerer, looker, prompts = build(settings)
    fake.reset()
    result = ask(store, settings, "when did the van park?", filters=Filters(job=job), embedder=embedder,
                 answerer=answerer, looker=looker, prompts=prompts)  # fmt: skip
    assert result.kind == "extractive" and any("budget" in n for n in result.notes)
    assert fake.requests == []


def test_model_errors_fall_back_to_an_extractive_answer(tmp_path: Path, fake: FakeDashScope) -> None:
    settings = _settings(tmp_path, fake, embedder="none")
    store = SqlResultStore(settings.resolved_database_url)
    _seed(store, tmp_path)
    _, answerer, _, prompts = build(settings)
    fake.reset()
    fake.enqueue(Behavior.error("InvalidParameter", "bad request", status=400))
    result = ask(store, settings, "when did the van park?", answerer=answerer, prompts=prompts)
    assert result.kind == "extractive" and any("answer model failed" in n for n in result.notes)
    assert len(fake.text_generations()) == 1


def test_look_again_resamples_frames_that_retention_deleted(tmp_path: Path, fake: FakeDashScope) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "street.mp4"
    if not example.exists():
        pytest.skip("examples/street.mp4 is missing")
    from worker.bootstrap import build_ports
    from worker.service import pipeline

    settings = _settings(tmp_path, fake, embedder="none", look_again_segments=1)
    local = settings.model_copy(update={"dashscope": settings.dashscope.model_copy(update={"api_key": None})})
    ports = build_ports(local)
    job, _ = ports.store.create_job(str(example), "street.mp4", {"segment_seconds": 5, "fps": 1, "describer": "local"})
    pipeline.run_inline(ports, job.id)
    stored = ports.store.frames(job.id, 0)
    for f in stored:
        Path(f.path).unlink()
    _, answerer, looker, prompts = build(settings)
    fake.reset()
    question = "what colour were the clothes of the people visible?"
    scope = Filters(job=job.id, to_ms=5000)
    result = ask(ports.store, settings, question, filters=scope, answerer=answerer, looker=looker, prompts=prompts)
    (vl,) = [r for r in fake.requests_of("generation") if r.videos]
    assert vl.fps == 1 and len(vl.frames[0]) == len(stored) == 5, "re-sampled at the stored times and rate"
    assert all(Path(f.path).is_file() for f in ports.store.frames(job.id, 0))
    assert [e.kind for e in result.evidence][:1] == ["look_again"]
