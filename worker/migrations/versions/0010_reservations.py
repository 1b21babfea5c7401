"""spend_reservations: model requests (and their video tokens) in flight under a job's caps, shared by
every worker process (issue 15): reserved in one transaction only while stored + reserved stays within
the cap, deleted once the segment's usage is stored, ignored once expired (a worker that died).

Revision ID: 0010
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0001"
branch_labels = ("reservations",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spend_reservations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("segment_index", sa.Integer, nullable=False),
        sa.Column("calls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("video_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_spend_reservations_job_id", "spend_reservations", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_spend_reservations_job_id", "spend_reservations")
    op.drop_table("spend_reservations")
