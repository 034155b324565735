"""App Home: who opened it, and the project each person filters it to.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "home_tabs",
        sa.Column("team_id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id")),
        sa.Column("opened_at", TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("home_tabs")
