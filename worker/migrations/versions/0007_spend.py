"""segments.http_attempts: HTTP requests a segment's model calls made (issue 15)

Revision ID: 0007
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0001"
branch_labels = ("spend",)
depends_on = None


def upgrade() -> None:
    op.add_column("segments", sa.Column("http_attempts", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("segments", "http_attempts")
