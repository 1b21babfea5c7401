"""``POST /v1/ask``: a short answer about the footage with citations checked against the evidence.

JSON by default; with ``"stream": true`` (or ``Accept: text/event-stream``) Server-Sent Events:
``evidence`` (the segments given to the model), ``delta`` (answer text as the model writes it, unchecked),
then ``answer`` (the checked result, the same object as the JSON reply) or ``error``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from scheduler.api.deps import ReadAccess, SettingsDep, StoreDep
from scheduler.api.models import ErrorBody
from worker.adapters.stores.vectors import Filters
from worker.ask import MAX_QUESTION, AskResult, ask, build
from worker.core.where import parse_where
from worker.errors import FramescribeError

router = APIRouter(prefix="/v1", tags=["ask"])
log = logging.getLogger(__name__)
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 422)}
STREAM_IDLE_S = 300.0  # the stream ends with an error event when nothing arrives for this long


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=MAX_QUESTION)
    job: str | None = Field(None, pattern=r"^[0-9a-f]{32}$", description="Only this job.")
    source: str | None = Field(None, max_length=200, description="Source name glob, e.g. cam1*.")
    from_: str | None = Field(None, alias="from", max_length=20, description="Range start (s, MM:SS, HH:MM:SS).")
    to: str | None = Field(None, max_length=20, description="Range end.")
    where: list[str] = Field(default_factory=list, max_length=8, description="Structured filters, e.g. people>=2.")
    stream: bool = Field(False, description="Answer as Server-Sent Events.")


class AskPublic(BaseModel):
    question: str
    answer: str
    kind: str
    written_by_model: bool
    model: str | None
    citations: list[dict[str, Any]]
    unsupported_citations: list[dict[str, Any]]
    evidence: list[dict[str, Any]]
    where: list[str]
    matching_segments: int | None
    usage: dict[str, int]
    notes: list[str]


def _links(data: dict[str, Any]) -> dict[str, Any]:
    """API links for each cited moment and evidence item: the segment, its thumbnail, the review page."""
    for item in [*data["citations"], *data["evidence"]]:
        job, index, n = item.get("job_id"), item.get("index"), item.get("thumb_n")
        if job is None or index is None:
            continue
        item["segment"] = f"/v1/jobs/{job}/segments?after={index - 1}&limit=1"
        item["review"] = f"/#/jobs/{job}?seg={index}"
        item["thumbnail"] = None if n is None else f"/v1/jobs/{job}/frames/{index}/{n}.jpg"
        item.pop("thumb_path", None)
    return data


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post("/ask", response_model=AskPublic, responses=ERRORS, summary="Answer a question with checked citations")
def ask_route(
    body: AskRequest,
    store: StoreDep,
    settings: SettingsDep,
    _: ReadAccess,
    accept: Annotated[str | None, Header()] = None,
) -> Any:
    filters = Filters.of(job=body.job, source=body.source, from_=body.from_, to=body.to)
    where = parse_where(body.where)
    if body.job:
        store.get_job(body.job)  # 404 before any stream starts
    embedder, answerer, looker, prompts = build(settings)
    kwargs: dict[str, Any] = {"filters": filters, "where": where, "embedder": embedder, "answerer": answerer,
                              "looker": looker, "prompts": prompts}  # fmt: skip
    if not (body.stream or "text/event-stream" in (accept or "")):
        result: AskResult = ask(store, settings, body.question, **kwargs)
        return AskPublic(**_links(result.as_dict()))
    events: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(maxsize=10_000)

    def work() -> None:
        try:
            ask(store, settings, body.question, on_event=lambda k, d: events.put((k, d)), **kwargs)
        except FramescribeError as exc:
            events.put(("error", {"error": {"code": "ask_failed", "message": exc.message}}))
        except Exception as exc:  # the stream ends with an error event, not a dropped connection
            log.warning("ask failed: %s: %s", type(exc).__name__, exc)
            events.put(("error", {"error": {"code": "internal", "message": "the answer could not be made"}}))
        finally:
            events.put(None)

    def stream() -> Iterator[str]:
        threading.Thread(target=work, name="ask", daemon=True).start()
        while True:
            try:
                item = events.get(timeout=STREAM_IDLE_S)
            except queue.Empty:
                yield _sse("error", {"error": {"code": "timeout", "message": "no progress for too long"}})
                return
            if item is None:
                return
            kind, data = item
            if kind == "answer":
                data = _links(dict(data))
            elif kind == "evidence":
                data = {**data, "evidence": _links({"citations": [], "evidence": list(data["evidence"])})["evidence"]}
            yield _sse(kind, data)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
