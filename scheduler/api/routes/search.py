"""``/v1/search``: full-text search over every job's segment descriptions and structured fields."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from scheduler.api.deps import ReadAccess, StoreDep
from scheduler.api.models import ErrorBody
from worker.adapters.stores.search import search as run_search
from worker.core.exports.text import to_ms
from worker.errors import InputError

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
    thumbnail: str | None
    segment: str


class SearchPublic(BaseModel):
    query: str
    items: list[SearchHitPublic]
    next_offset: int | None


def _time(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    ms = to_ms(value)
    if ms is None or ms < 0:
        raise InputError(f"'{name}' must be a time in {TIME_HELP}, got '{value[:40]}'", field=name)
    return ms


@router.get("/search", response_model=SearchPublic, responses=ERRORS, summary="Search segments across jobs, ranked")
def search(
    store: StoreDep,
    _: ReadAccess,
    q: Annotated[str, Query(min_length=1, max_length=500, description="Words; every word must match.")],
    job: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$", description="Only this job.")] = None,
    from_: Annotated[str | None, Query(alias="from", max_length=20, description=f"Range start ({TIME_HELP}).")] = None,
    to: Annotated[str | None, Query(max_length=20, description=f"Range end ({TIME_HELP}).")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> SearchPublic:
    hits = run_search(
        store, q, job=job, from_ms=_time(from_, "from"), to_ms=_time(to, "to"), limit=limit, offset=offset
    )
    items = [
        SearchHitPublic(
            **{k: v for k, v in h.as_dict().items() if k != "thumb_n"},
            thumbnail=None if h.thumb_n is None else f"/v1/jobs/{h.job_id}/frames/{h.index}/{h.thumb_n}.jpg",
            segment=f"/v1/jobs/{h.job_id}/segments?after={h.index - 1}&limit=1",
        )
        for h in hits
    ]
    return SearchPublic(query=q, items=items, next_offset=offset + limit if len(hits) == limit else None)
