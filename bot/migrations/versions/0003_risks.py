"""Risk register: risks and their assessment history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "risks",
        sa.Column("id", ID, primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("title", sa.String(150), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("likelihood", sa.Integer(), nullable=False),
        sa.Column("impact", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("band", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64)),
        sa.Column("treatment", sa.String(16), nullable=False),
        sa.Column("mitigation", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("next_review", sa.Date(), nullable=False),
        sa.Column("closed_reason", sa.Text()),
        sa.Column("closed_by", sa.String(64)),
        sa.Column("closed_at", TIME),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("team_id", "number"),
        sa.CheckConstraint("likelihood BETWEEN 1 AND 5", name="ck_risks_likelihood"),
        sa.CheckConstraint("impact BETWEEN 1 AND 5", name="ck_risks_impact"),
    )
    op.create_index("ix_risks_project_status", "risks", ["project_id", "status"])
    op.create_table(
        "risk_assessments",
        sa.Column("id", ID, primary_key=True),
        sa.Column("risk_id", ID, sa.ForeignKey("risks.id"), nullable=False, index=True),
        sa.Column("likelihood", sa.Integer(), nullable=False),
        sa.Column("impact", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("band", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("assessed_by", sa.String(64), nullable=False),
        sa.Column("at", TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("risk_assessments")
    op.drop_index("ix_risks_project_status", table_name="risks")
    op.drop_table("risks")
