"""Model bindings and promotions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("projects", sa.Column("announce_new_versions", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))
    op.create_table(
        "model_bindings",
        sa.Column("id", ID, primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False, index=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.UniqueConstraint("team_id", "model"),
    )
    op.create_table(
        "promotions",
        sa.Column("id", ID, primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("to_stage", sa.String(64)),
        sa.Column("from_stage", sa.String(64)),
        sa.Column("actor", sa.String(64)),
        sa.Column("url", sa.String(500)),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("delivery_id", sa.String(64), unique=True),
        sa.Column("gate_record", JSON),
        sa.Column("occurred_at", TIME, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False, index=True),
        sa.UniqueConstraint("team_id", "number"),
    )
    op.create_index("ix_promotions_model_version", "promotions", ["model", "version"])


def downgrade() -> None:
    op.drop_index("ix_promotions_model_version", table_name="promotions")
    op.drop_table("promotions")
    op.drop_table("model_bindings")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("announce_new_versions")
