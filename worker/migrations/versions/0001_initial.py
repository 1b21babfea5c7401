"""jobs, segments, frames

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", TS, nullable=False, index=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("source_name", sa.String(512), nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("video", sa.JSON),
        sa.Column("segment_count", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("summary", sa.JSON),
        sa.Column("summary_state", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(200), unique=True),
        sa.Column("schedule_id", sa.String(32), index=True),
        sa.Column("webhook_url", sa.Text),
        sa.Column("finished_at", TS),
    )
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("index", sa.Integer, nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("fps", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("planned_frames", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("description", sa.Text),
        sa.Column("structured", sa.JSON),
        sa.Column("describer", sa.String(32)),
        sa.Column("model", sa.String(64)),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("video_tokens", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String(64)),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("frame_count", sa.Integer, nullable=False),
        sa.Column("reused_from", sa.Integer),
        sa.Column("flags", sa.JSON),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("job_id", "index", name="uq_segment_job_index"),
    )
    op.create_table(
        "frames",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("segment_index", sa.Integer, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("t_ms", sa.BigInteger, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.UniqueConstraint("job_id", "segment_index", "n", name="uq_frame"),
    )
    op.create_index("ix_frames_job_segment", "frames", ["job_id", "segment_index"])


def downgrade() -> None:
    op.drop_table("frames")
    op.drop_table("segments")
    op.drop_table("jobs")
