"""segment vectors (meaning-based search) and ask calls (answers, tokens, citations)

``segment_vectors`` holds one embedding per segment (``segment_id`` = segments.id, deleted with it),
tagged with the embedder's name and a hash of the embedded text so a reindex only redoes stale ones.
``ask_calls`` records every ``ask``: tokens (billed like segment calls, under the job budget when the
question is scoped to a job), the checked answer and the citations that were removed.

Revision ID: 0005
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0001"
branch_labels = ("vectors",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "segment_vectors",
        sa.Column("segment_id", sa.Integer, sa.ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("embedder", sa.String(64), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("text_hash", sa.String(32), nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_segment_vectors_job", "segment_vectors", ["job_id"])
    op.create_index("ix_segment_vectors_embedder", "segment_vectors", ["embedder"])
    op.create_table(
        "ask_calls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=True),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("model", sa.String(64)),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("video_tokens", sa.Integer, nullable=False),
        sa.Column("embed_tokens", sa.Integer, nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String(64)),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("answer", sa.Text),
        sa.Column("unsupported", sa.JSON),
    )
    op.create_index("ix_ask_calls_job", "ask_calls", ["job_id"])


def downgrade() -> None:
    op.drop_table("ask_calls")
    op.drop_table("segment_vectors")
