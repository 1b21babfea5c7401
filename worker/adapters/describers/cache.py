"""Description cache and per-job frame signatures, in the result store's database (migration 0004).

The cache maps ``CacheKey.digest()`` (frames sent + prompt + model + fps + describer) to a description,
so a re-run of the same job makes no model call. Signatures (the pHashes of a described segment's
frames) let a later segment of the same job reuse a near-identical segment's description.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from worker.core.gating import from_hex, to_hex
from worker.core.models import Description, Usage
from worker.errors import StoreError

log = logging.getLogger(__name__)
metadata = MetaData()

cache_table = Table(
    "description_cache",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("describer", String(32), nullable=False),
    Column("model", String(64)),
    Column("text", Text, nullable=False),
    Column("structured", JSON),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("video_tokens", Integer, nullable=False),
    Column("hits", Integer, nullable=False),
)
signature_table = Table(
    "segment_signatures",
    metadata,
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("segment_index", Integer, primary_key=True),
    Column("hashes", JSON, nullable=False),
)


class DescriptionCache:
    """Reads and writes the two tables on the store's engine; each call is one short transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, key: str) -> tuple[Description, Usage] | None:
        """The cached description (usage zeroed: nothing is billed again) and what the original call cost."""
        try:
            with self.engine.begin() as conn:
                row = conn.execute(select(cache_table).where(cache_table.c.key == key)).mappings().first()
                if row is None:
                    return None
                conn.execute(update(cache_table).where(cache_table.c.key == key).values(hits=cache_table.c.hits + 1))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the description cache: {exc}") from None
        original = Usage(row["input_tokens"], row["output_tokens"], row["video_tokens"])
        desc = Description(
            text=row["text"],
            structured=dict(row["structured"] or {}),
            describer=row["describer"],
            model=row["model"],
            usage=Usage(attempts=0),
            flags=("cached",),
        )
        return desc, original

    def put(self, key: str, desc: Description) -> None:
        """Remember a description; a concurrent writer of the same key wins silently."""
        u = desc.usage
        values = {
            "key": key,
            "created_at": datetime.now(UTC),
            "describer": desc.describer[:32],
            "model": desc.model,
            "text": desc.text,
            "structured": desc.structured,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "video_tokens": u.video_tokens,
            "hits": 0,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(cache_table.insert().values(**values))
        except IntegrityError:
            return
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write the description cache: {exc}") from None

    def add_signature(self, job_id: str, index: int, hashes: Sequence[int]) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(signature_table.insert().values(job_id=job_id, segment_index=index, hashes=to_hex(hashes)))
        except IntegrityError:
            return  # a redelivered segment: the first signature stays
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store the frame signature of segment {index}: {exc}") from None

    def signatures(self, job_id: str, *, before: int | None = None) -> Iterator[tuple[int, tuple[int, ...]]]:
        """``(index, hashes)`` of the job's described segments, newest first (optionally before an index)."""
        q = select(signature_table.c.segment_index, signature_table.c.hashes).where(signature_table.c.job_id == job_id)
        if before is not None:
            q = q.where(signature_table.c.segment_index < before)
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(q.order_by(signature_table.c.segment_index.desc())).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read frame signatures: {exc}") from None
        for index, hashes in rows:
            yield int(index), from_hex(hashes)
