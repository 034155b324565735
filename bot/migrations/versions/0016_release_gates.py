"""Gates that control the release: longer milestones, approvals per role (`ds:2`), wait timers,
withdrawal, `promote to <alias>` (MLflow), one sign-off per person per gate, and GitHub
deployment protection rules (mappings and held deployments).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
# Names SQLite's unnamed constraints while batch mode rebuilds the table.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}


def upgrade() -> None:
    with op.batch_alter_table("gates") as batch:
        batch.alter_column("milestone", type_=sa.String(80), existing_type=sa.String(40),
                           existing_nullable=False)
        batch.add_column(sa.Column("role_counts", JSON))
        batch.add_column(sa.Column("wait_seconds", sa.Integer()))
        batch.add_column(sa.Column("ready_at", TIME))
        batch.add_column(sa.Column("promote_alias", sa.String(64)))
        batch.add_column(sa.Column("promotion_state", sa.String(16)))
        batch.add_column(sa.Column("promotion_attempts", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("promotion_next_at", TIME))
        batch.add_column(sa.Column("promotion_error", sa.Text()))
        batch.add_column(sa.Column("promoted_at", TIME))
        batch.add_column(sa.Column("withdrawn_by", sa.String(64)))
        batch.add_column(sa.Column("withdrawn_reason", sa.Text()))
    op.create_index("ix_gates_ready_at", "gates", ["ready_at"])
    op.create_index("ix_gates_promotion_state", "gates", ["promotion_state"])

    old = "gate_signoffs_gate_id_role_key" if op.get_context().dialect.name == "postgresql" \
        else "uq_gate_signoffs_gate_id_role"
    with op.batch_alter_table("gate_signoffs", naming_convention=NAMING) as batch:
        batch.add_column(sa.Column("slot", sa.Integer()))
        batch.drop_constraint(old, type_="unique")
    # Approvals so far each filled their role's only slot.
    op.execute("UPDATE gate_signoffs SET slot = 1 WHERE decision = 'approve'")
    with op.batch_alter_table("gate_signoffs") as batch:
        batch.create_unique_constraint("uq_gate_signoffs_gate_id_user_id", ["gate_id", "user_id"])
        batch.create_unique_constraint("uq_gate_signoffs_gate_id_role_slot",
                                       ["gate_id", "role", "slot"])

    op.create_table(
        "github_mappings",
        sa.Column("id", ID, primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False, index=True),
        sa.Column("repo", sa.String(140), nullable=False),
        sa.Column("environment", sa.String(255), nullable=False),
        sa.Column("model", sa.String(100)),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.UniqueConstraint("repo", "environment"),
    )
    op.create_table(
        "github_deployments",
        sa.Column("id", ID, primary_key=True),
        sa.Column("delivery_id", sa.String(64), nullable=False, unique=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False, index=True),
        sa.Column("repo", sa.String(140), nullable=False),
        sa.Column("environment", sa.String(255), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("callback_url", sa.String(500), nullable=False),
        sa.Column("sha", sa.String(64)),
        sa.Column("ref", sa.String(255)),
        sa.Column("model", sa.String(100)),
        sa.Column("version", sa.String(64)),
        sa.Column("gate_ids", JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("comment", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIME),
        sa.Column("last_error", sa.Text()),
        sa.Column("answered_at", TIME),
        sa.Column("created_at", TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("github_deployments")
    op.drop_table("github_mappings")
    with op.batch_alter_table("gate_signoffs") as batch:
        batch.drop_constraint("uq_gate_signoffs_gate_id_role_slot", type_="unique")
        batch.drop_constraint("uq_gate_signoffs_gate_id_user_id", type_="unique")
        batch.drop_column("slot")
        batch.create_unique_constraint("gate_signoffs_gate_id_role_key", ["gate_id", "role"])
    op.drop_index("ix_gates_promotion_state", table_name="gates")
    op.drop_index("ix_gates_ready_at", table_name="gates")
    with op.batch_alter_table("gates") as batch:
        for column in ("withdrawn_reason", "withdrawn_by", "promoted_at", "promotion_error",
                       "promotion_next_at", "promotion_attempts", "promotion_state",
                       "promote_alias", "ready_at", "wait_seconds", "role_counts"):
            batch.drop_column(column)
        batch.alter_column("milestone", type_=sa.String(40), existing_type=sa.String(80),
                           existing_nullable=False)
