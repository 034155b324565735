"""Project isolation: whether a project's channel is private (and who is in it), and the
project's owners.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Unknown (NULL) until Slack is asked: the access rules read it as private (fail closed).
    op.add_column("projects", sa.Column("is_private", sa.Boolean()))
    op.add_column("projects", sa.Column("privacy_checked_at", TIME))
    op.add_column("projects", sa.Column("member_ids", JSON))
    op.create_table(
        "project_owners",
        sa.Column("id", ID, primary_key=True),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("added_by", sa.String(64), nullable=False),
        sa.Column("added_at", TIME, nullable=False),
        sa.UniqueConstraint("project_id", "user_id"),
    )


def downgrade() -> None:
    op.drop_table("project_owners")
    op.drop_column("projects", "member_ids")
    op.drop_column("projects", "privacy_checked_at")
    op.drop_column("projects", "is_private")
