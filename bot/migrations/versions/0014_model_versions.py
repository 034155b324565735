"""Hypotheses and decisions name the model version they are about (`model`, `version`), so
`/quorum trace` links them by these fields instead of a substring of their text.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TABLES = ("hypotheses", "decisions")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("model", sa.String(100), nullable=True))
        op.add_column(table, sa.Column("version", sa.String(64), nullable=True))
        op.create_index(f"ix_{table}_model_version", table, ["team_id", "model", "version"])


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_model_version", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("version")
            batch.drop_column("model")
