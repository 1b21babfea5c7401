"""frame_blobs: review-size JPEG copies of sampled frames, served by any machine (issue 16)

Revision ID: 0009
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0001"
branch_labels = ("blobs",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "frame_blobs",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("segment_index", sa.Integer, primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("jpeg", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_frame_blobs_created_at", "frame_blobs", ["created_at"])  # retention thins by age


def downgrade() -> None:
    op.drop_index("ix_frame_blobs_created_at", table_name="frame_blobs")
    op.drop_table("frame_blobs")
