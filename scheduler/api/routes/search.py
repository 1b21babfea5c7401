"""``/v1/search``: full-text search over every job's segment descriptions and structured fields."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from scheduler.api.deps import ReadAccess, SettingsDep, StoreDep
from scheduler.api.models import ErrorBody
from worker.adapters.stores.vectors import Filters
from worker.core.where import parse_where
from worker.indexing import embedder_for
from worker.retrieval import search as run_search

router = APIRouter(prefix="/v1", tags=["search"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 422)}
TIME_HELP = "seconds, or MM:SS / HH:MM:SS"


class SearchHitPublic(BaseModel):
    job_id: str
    source_name: str
    index: int
    start_ms: int
    end_ms: int
    state: str
    snippet: str
    marks: list[tuple[int, int]]
    rank: float
    mode: str
    thumbnail: str | None
    segment: str


class SearchPublic(BaseModel):
    query: str
    mode: str
    items: list[SearchHitPublic]
    next_offset: int | None


@router.get("/search", response_model=SearchPublic, responses=ERRORS, summary="Search segments across jobs, ranked")
def search(
    store: StoreDep,
    settings: SettingsDep,
    _: ReadAccess,
    q: Annotated[str, Query(max_length=500, description="Words or a sentence; empty with `where` only.")] = "",
    mode: Annotated[
        Literal["text", "semantic", "hybrid"] | None,
        Query(description="text | semantic | hybrid (default: hybrid when vectors exist, else text)."),
    ] = None,
    where: Annotated[
        list[str] | None, Query(max_length=200, description="Structured filters, e.g. people>=2 (repeatable).")
    ] = None,
    job: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$", description="Only this job.")] = None,
    source: Annotated[str | None, Query(max_length=200, description="Source name glob, e.g. cam1*.")] = None,
    from_: Annotated[str | None, Query(alias="from", max_length=20, description=f"Range start ({TIME_HELP}).")] = None,
    to: Annotated[str | None, Query(max_length=20, description=f"Range end ({TIME_HELP}).")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
) -> SearchPublic:
    filters = Filters.of(job=job, source=source, from_=from_, to=to)
    embedder = embedder_for(settings) if mode != "text" else None
    hits = run_search(
        store, q, mode=mode, filters=filters, where=parse_where(where), embedder=embedder, limit=limit, offset=offset
    )
    items = [
        SearchHitPublic(
            **{k: v for k, v in h.as_dict().items() if k != "thumb_n"},
            thumbnail=None if h.thumb_n is None else f"/v1/jobs/{h.job_id}/frames/{h.index}/{h.thumb_n}.jpg",
            segment=f"/v1/jobs/{h.job_id}/segments?after={h.index - 1}&limit=1",
        )
        for h in hits
    ]
    used = items[0].mode if items else (mode or "text")
    return SearchPublic(query=q, mode=used, items=items, next_offset=offset + limit if len(hits) == limit else None)
