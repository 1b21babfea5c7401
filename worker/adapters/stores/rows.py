"""ORM rows -> the core's value objects."""

from __future__ import annotations

from worker.adapters.stores.engine import utc
from worker.adapters.stores.schema import JobRow, SegmentDbRow
from worker.core.models import Job, SegmentRow


def to_job(row: JobRow) -> Job:
    return Job(
        row.id,
        row.state,
        row.source,
        row.source_name,
        dict(row.options or {}),
        row.video,
        row.segment_count,
        row.error,
        row.summary,
        utc(row.created_at),
        utc(row.updated_at),
        utc(row.finished_at) if row.finished_at else None,
        row.schedule_id,
        row.webhook_url,
        row.idempotency_key,
    )


def to_segment(row: SegmentDbRow) -> SegmentRow:
    return SegmentRow(
        index=row.index,
        start_ms=row.start_ms,
        end_ms=row.end_ms,
        state=row.state,
        description=row.description,
        structured=dict(row.structured or {}),
        frame_count=row.frame_count,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        video_tokens=row.video_tokens,
        error=row.error,
        describer=row.describer,
        model=row.model,
        reused_from=row.reused_from,
        attempts=row.attempts,
        latency_ms=row.latency_ms,
        request_id=row.request_id,
        fps=row.fps,
        flags=tuple(row.flags or ()),
        http_attempts=row.http_attempts or 0,
    )
