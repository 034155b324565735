"""Hypothesis log: hypotheses, and the hypotheses each decision is based on.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "hypotheses",
        sa.Column("id", ID, primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False, index=True),
        sa.Column("statement", sa.String(300), nullable=False),
        sa.Column("metric", sa.Text(), nullable=False),
        sa.Column("expected_effect", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(64)),
        sa.Column("experiment_url", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("started_at", TIME),
        sa.Column("concluded_at", TIME),
        sa.Column("concluded_by", sa.String(64)),
        sa.Column("cites_id", ID, sa.ForeignKey("hypotheses.id"), index=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False, index=True),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("team_id", "number"),
    )
    op.create_table(
        "decision_hypotheses",
        sa.Column("decision_id", ID, sa.ForeignKey("decisions.id"), primary_key=True),
        sa.Column("hypothesis_id", ID, sa.ForeignKey("hypotheses.id"), primary_key=True,
                  index=True),
    )


def downgrade() -> None:
    op.drop_table("decision_hypotheses")
    op.drop_table("hypotheses")
