"""Milestone gates: role assignments, gates and their sign-offs, gate settings of projects.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("projects", sa.Column("allow_self_approval", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))
    op.add_column("projects", sa.Column("gate_reminder_hours", sa.Integer(), nullable=False,
                                        server_default=sa.text("24")))
    op.create_table(
        "role_assignments",
        sa.Column("id", ID, primary_key=True),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("assigned_by", sa.String(64), nullable=False),
        sa.Column("assigned_at", TIME, nullable=False),
        sa.UniqueConstraint("project_id", "user_id", "role"),
    )
    op.create_table(
        "gates",
        sa.Column("id", ID, primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False, index=True),
        sa.Column("milestone", sa.String(40), nullable=False),
        sa.Column("model", sa.String(100)),
        sa.Column("version", sa.String(64)),
        sa.Column("required_roles", JSON, nullable=False),
        sa.Column("criteria", JSON, nullable=False),
        sa.Column("status", sa.String(24), nullable=False, index=True),
        sa.Column("due_date", sa.Date()),
        sa.Column("expires_at", TIME),
        sa.Column("passed_at", TIME),
        sa.Column("supersedes_id", ID, sa.ForeignKey("gates.id")),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("team_id", "number"),
    )
    op.create_index("ix_gates_model_version", "gates", ["model", "version"])
    op.create_table(
        "gate_signoffs",
        sa.Column("id", ID, primary_key=True),
        sa.Column("gate_id", ID, sa.ForeignKey("gates.id"), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("at", TIME, nullable=False),
        sa.UniqueConstraint("gate_id", "role"),
    )


def downgrade() -> None:
    op.drop_table("gate_signoffs")
    op.drop_index("ix_gates_model_version", table_name="gates")
    op.drop_table("gates")
    op.drop_table("role_assignments")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("gate_reminder_hours")
        batch.drop_column("allow_self_approval")
