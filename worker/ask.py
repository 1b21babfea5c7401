"""``ask``: a short answer about the footage that cites the moments it relies on, checked by code.

retrieval -> evidence segments (+ "look again" replies for visual-detail questions) -> the answer model
(``ask.model``, a text model; prompts in configs/prompts.yaml under ``ask``) -> every citation checked
against the evidence (``core/citations.py``): one outside it is removed and reported. No evidence: the
answer says so and no model is called. No API key (or the job's budget is spent): an extractive answer,
labelled as not written by a language model. Tokens of every call are recorded in ``ask_calls``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.adapters.describers.transport import Reply
from worker.adapters.stores.sql import SqlResultStore
from worker.adapters.stores.vectors import Filters, VectorStore
from worker.ask_evidence import Evidence, gather, look_again, wants_look_again
from worker.config import Settings
from worker.core.citations import Citation, Span, check, cite
from worker.core.models import Usage
from worker.core.prompts import PromptSet, render
from worker.core.where import Condition, infer_where
from worker.embedding import Embedder
from worker.errors import DescriberError, FramescribeError, InputError

log = logging.getLogger(__name__)
OnEvent = Callable[[str, dict[str, Any]], None]
MAX_QUESTION = 1000
EXTRACTIVE_LABEL = "Not written by a language model: the best-matching moments, as stored."
NO_EVIDENCE = "Nothing in the stored descriptions matches this question, so there is no answer to give."
DEFAULT_PROMPTS = PromptSet(
    system=(
        "You answer questions about video footage using only the timed evidence given. Cite every moment you rely "
        "on with its time in square brackets exactly as given, e.g. [01:23] or [01:23–01:41]. If the evidence does "
        "not answer the question, say so. Be brief: at most four sentences."
    ),
    segment="Question: $question\n$facts\nEvidence (time, source, description):\n$evidence",
    summary=(
        "These frames come from $start to $end of the video, sampled at $fps frames per second. Look closely and "
        "answer: $question Describe only what is visible."
    ),
)


class Answerer(Protocol):
    model: str

    def answer(self, system: str, prompt: str, on_delta: Callable[[str], None] | None = None) -> Reply: ...


@dataclass
class AskResult:
    question: str
    answer: str
    kind: str  # model | extractive | no_evidence
    written_by_model: bool
    model: str | None
    evidence: list[Evidence]
    citations: list[dict[str, Any]] = field(default_factory=list)
    unsupported_citations: list[dict[str, Any]] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    matching_segments: int | None = None
    usage: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question, "answer": self.answer, "kind": self.kind,
            "written_by_model": self.written_by_model, "model": self.model,
            "citations": self.citations, "unsupported_citations": self.unsupported_citations,
            "evidence": [e.as_dict() for e in self.evidence], "where": self.where,
            "matching_segments": self.matching_segments, "usage": self.usage, "notes": self.notes,
        }  # fmt: skip


def _quiet(_kind: str, _data: dict[str, Any]) -> None:
    pass


def ask(
    store: SqlResultStore,
    settings: Settings,
    question: str,
    *,
    filters: Filters = Filters(),
    where: Sequence[Condition] = (),
    embedder: Embedder | None = None,
    answerer: Answerer | None = None,
    looker: Any = None,
    prompts: PromptSet = DEFAULT_PROMPTS,
    on_event: OnEvent = _quiet,
) -> AskResult:
    """Answer ``question`` from the stored segments (see the module docstring)."""
    question = " ".join(question.split())
    if not question:
        raise InputError("the question is empty", field="question")
    if len(question) > MAX_QUESTION:
        raise InputError(f"the question is longer than {MAX_QUESTION} characters", field="question")
    if filters.job:
        store.get_job(filters.job)  # NotFound for an unknown job
    conditions = list(where) or infer_where(question)
    a = settings.ask
    evidence, matching = gather(store, question, filters, conditions, embedder, a.evidence, a.min_similarity)
    result = AskResult(question, "", "no_evidence", False, None, evidence, where=[str(c) for c in conditions])
    result.matching_segments = matching
    on_event("evidence", {"evidence": [e.as_dict() for e in evidence], "matching_segments": matching})
    usage = Usage(attempts=0)
    if not evidence:
        result.answer = NO_EVIDENCE
        _finish(store, filters, result, usage, 0)
        on_event("answer", result.as_dict())
        return result
    budget_note = _over_budget(store, settings, filters.job)
    if budget_note:
        result.notes.append(budget_note)
        answerer = looker = None
    started = time.monotonic()
    if looker is not None and a.look_again and wants_look_again(question):
        extra, used = look_again(store, looker, question, evidence[: a.look_again_segments], prompts.summary, settings)
        usage = usage + used
        evidence = extra + evidence
        result.evidence = evidence
        if extra:
            on_event("evidence", {"evidence": [e.as_dict() for e in evidence], "matching_segments": matching})
    if answerer is None:
        result.answer, result.kind = _extractive(evidence, matching, conditions), "extractive"
    else:
        try:
            reply = answerer.answer(
                prompts.system,
                render(prompts.segment, {"question": question, "evidence": _lines(evidence),
                                         "facts": _facts(matching, conditions)}),
                lambda piece: on_event("delta", {"text": piece}),
            )  # fmt: skip
            usage = usage + Usage(reply.input_tokens, reply.output_tokens, reply.video_tokens, reply.request_id)
            result.answer, result.kind, result.written_by_model = reply.text.strip(), "model", True
            result.model = answerer.model
        except DescriberError as exc:
            log.warning("ask: the answer model failed (%s); answering extractively", exc.message)
            result.notes.append(f"the answer model failed ({exc.message}); extractive answer instead")
            result.answer, result.kind = _extractive(evidence, matching, conditions), "extractive"
    _check(result, evidence)
    if result.unsupported_citations:
        result.notes.append(f"{len(result.unsupported_citations)} citation(s) outside the evidence were removed")
    _finish(store, filters, result, usage, round((time.monotonic() - started) * 1000))
    on_event("answer", result.as_dict())
    return result


def _lines(evidence: Sequence[Evidence]) -> str:
    return "\n".join(
        f"{cite(e.start_ms, e.end_ms)} ({e.source_name}{', looked again' if e.kind == 'look_again' else ''}) {e.text}"
        for e in evidence
    )


def _facts(matching: int | None, conditions: Sequence[Condition]) -> str:
    if matching is None:
        return ""
    shown = f" (first {min(matching, 200)} listed by time)" if matching > 8 else ""
    return f"Counted from stored fields: {matching} segment(s) match {', '.join(map(str, conditions))}{shown}."


def _extractive(evidence: Sequence[Evidence], matching: int | None, conditions: Sequence[Condition]) -> str:
    head = [EXTRACTIVE_LABEL]
    if matching is not None:
        head.append(_facts(matching, conditions))
    return "\n".join(head + [f"{cite(e.start_ms, e.end_ms)} {e.source_name}: {e.text}" for e in evidence])


def _check(result: AskResult, evidence: Sequence[Evidence]) -> None:
    spans = [Span(e.start_ms, e.end_ms, e.key) for e in evidence]
    by_key = {e.key: e for e in reversed(evidence)}
    result.answer, good, bad = check(result.answer, spans)

    def public(c: Citation) -> dict[str, Any]:
        ev = by_key.get(c.key) if c.key else None
        out: dict[str, Any] = {"text": c.text, "start_ms": c.start_ms, "end_ms": c.end_ms}
        if ev is not None:
            out.update(job_id=ev.job_id, index=ev.index, source_name=ev.source_name, thumb_path=ev.thumb_path,
                       thumb_n=ev.thumb_n, segment_start_ms=ev.start_ms, segment_end_ms=ev.end_ms)  # fmt: skip
        return out

    result.citations = [public(c) for c in good]
    result.unsupported_citations = [public(c) for c in bad]


def _over_budget(store: SqlResultStore, settings: Settings, job_id: str | None) -> str | None:
    """A note when answering would pass the job's call or video-token cap (then no model is called)."""
    if not job_id:
        return None
    from worker.options import JobOptions

    opts = JobOptions.parse(store.get_job(job_id).options or {})
    resolved = opts.apply(settings)  # the one cap lookup
    max_calls, max_video = resolved.max_calls, resolved.max_video_tokens
    used = store.usage(job_id)
    asked = VectorStore(store).ask_usage(job_id)
    if max_calls is not None and used["attempts"] + asked["calls"] + 1 > max_calls:
        return f"the job's call budget ({max_calls}) is spent; extractive answer instead"
    if max_video is not None and used["video_tokens"] + asked["video_tokens"] >= max_video:
        return f"the job's video-token budget ({max_video}) is spent; extractive answer instead"
    return None


def _finish(store: SqlResultStore, filters: Filters, result: AskResult, usage: Usage, latency_ms: int) -> None:
    calls = usage.attempts
    result.usage = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                    "video_tokens": usage.video_tokens, "calls": calls}  # fmt: skip
    try:
        VectorStore(store).record_ask(
            job_id=filters.job, question=result.question[:MAX_QUESTION], mode=result.kind, model=result.model,
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, video_tokens=usage.video_tokens,
            embed_tokens=0, calls=calls, request_id=usage.request_id, latency_ms=latency_ms,
            answer=result.answer, unsupported=result.unsupported_citations,
        )  # fmt: skip
    except Exception as exc:  # pragma: no cover - the answer stands even if its record cannot be written
        log.warning("ask: usage not recorded: %s", exc)


def build(settings: Settings) -> tuple[Embedder | None, Answerer | None, Any, PromptSet]:
    """The embedder, answer model and look-again describer the settings call for (None offline)."""
    from worker.bootstrap import load_prompts
    from worker.indexing import embedder_for

    prompts = load_prompts().get("ask", DEFAULT_PROMPTS)
    embedder = embedder_for(settings)
    if not settings.dashscope_api_key:
        return embedder, None, None, prompts
    from worker.adapters.describers import build_describer
    from worker.adapters.embedders.dashscope import build_answerer

    try:
        looker = build_describer("dashscope", settings) if settings.ask.look_again else None
    except FramescribeError as exc:
        log.warning("ask: no look-again describer (%s)", exc.message)
        looker = None
    return embedder, build_answerer(settings), looker, prompts
