"""Processed Slack events and modal submissions, so that retries and double submits act once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "processed_requests",
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(120), nullable=False),
        sa.Column("processed_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("team_id", "key"),
    )
    op.create_index("ix_processed_requests_processed_at", "processed_requests",
                    ["processed_at"])


def downgrade() -> None:
    op.drop_index("ix_processed_requests_processed_at", table_name="processed_requests")
    op.drop_table("processed_requests")
