"""Leases and the webhook outbox (issue 16): a running segment's and a summary's owner and expiry, and
one outbox row per finished job's webhook, written with the summary.

Revision ID: 0008
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0001"
branch_labels = ("leases",)
depends_on = None


def upgrade() -> None:
    op.add_column("segments", sa.Column("lease_owner", sa.String(64), nullable=True))
    op.add_column("segments", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("summary_owner", sa.String(64), nullable=True))
    op.add_column("jobs", sa.Column("summary_lease_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "webhook_outbox",
        sa.Column("delivery_id", sa.String(32), primary_key=True),
        sa.Column("job_id", sa.String(32), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),  # pending|sent|given_up
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_webhook_outbox_due", "webhook_outbox", ["state", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_outbox_due", "webhook_outbox")
    op.drop_table("webhook_outbox")
    op.drop_column("jobs", "summary_lease_until")
    op.drop_column("jobs", "summary_owner")
    op.drop_column("segments", "lease_until")
    op.drop_column("segments", "lease_owner")
