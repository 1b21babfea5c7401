"""description cache and segment signatures (reuse)

Revision ID: 0004
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = ("cache",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "description_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("describer", sa.String(32), nullable=False),
        sa.Column("model", sa.String(64)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("structured", sa.JSON),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("video_tokens", sa.Integer, nullable=False),
        sa.Column("hits", sa.Integer, nullable=False),
    )
    op.create_table(
        "segment_signatures",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("segment_index", sa.Integer, primary_key=True),
        sa.Column("hashes", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("segment_signatures")
    op.drop_table("description_cache")
