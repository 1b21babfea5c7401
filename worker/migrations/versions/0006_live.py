"""live cameras: streams, wall-clock segment times, gaps, alert/digest outbox, digests

Revision ID: 0006
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0001"
branch_labels = ("live",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "live_streams",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("desired", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="SET NULL")),
        sa.Column("owner", sa.String(128)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "live_segments",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("segment_index", sa.Integer, primary_key=True),
        sa.Column("utc_start_ms", sa.BigInteger, nullable=False),
        sa.Column("utc_end_ms", sa.BigInteger, nullable=False),
        sa.Column("pts_start_ms", sa.BigInteger, nullable=False),
        sa.Column("pts_end_ms", sa.BigInteger, nullable=False),
        sa.Column("connection", sa.Integer, nullable=False),
        sa.Column("static", sa.Boolean, nullable=False),
        sa.Column("pre_event_ms", sa.Integer, nullable=False),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.UniqueConstraint("job_id", "utc_start_ms", name="uq_live_segment_start"),
    )
    op.create_table(
        "live_gaps",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("utc_start_ms", sa.BigInteger, primary_key=True),
        sa.Column("utc_end_ms", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_table(
        "live_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dedup_key", sa.String(200), nullable=False, unique=True),
        sa.Column("camera", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("mqtt", sa.Boolean, nullable=False),
        sa.Column("webhook_url", sa.Text),
        sa.Column("mqtt_sent_at", TS),
        sa.Column("webhook_sent_at", TS),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "live_digests",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("period_start_ms", sa.BigInteger, primary_key=True),
        sa.Column("period_end_ms", sa.BigInteger, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("segments", sa.Integer, nullable=False),
        sa.Column("path", sa.Text),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    for name in ("live_digests", "live_outbox", "live_gaps", "live_segments", "live_streams"):
        op.drop_table(name)
