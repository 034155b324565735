"""Rituals: custom questions, per-person time zones, retro votes and action items, reviews.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("ritual_schedules") as table:
        table.add_column(sa.Column("questions", JSON))
        table.add_column(sa.Column("mode", sa.String(16), nullable=False,
                                   server_default="channel"))
        table.add_column(sa.Column("votes_per_person", sa.Integer(), nullable=False,
                                   server_default="3"))
    with op.batch_alter_table("ritual_occurrences") as table:
        table.add_column(sa.Column("questions", JSON))
        table.add_column(sa.Column("mode", sa.String(16), nullable=False,
                                   server_default="channel"))
        table.add_column(sa.Column("votes_per_person", sa.Integer(), nullable=False,
                                   server_default="3"))
        table.add_column(sa.Column("outcome", sa.Text()))
        table.add_column(sa.Column("outcome_by", sa.String(64)))
        table.add_column(sa.Column("outcome_decisions", JSON, nullable=False,
                                   server_default="[]"))
    with op.batch_alter_table("ritual_updates") as table:
        table.add_column(sa.Column("answers", JSON, nullable=False, server_default="{}"))
        table.add_column(sa.Column("parts", JSON, nullable=False, server_default="{}"))
    with op.batch_alter_table("retro_items") as table:
        table.add_column(sa.Column("number", sa.Integer()))
        table.add_column(sa.Column("anonymous", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        table.add_column(sa.Column("done_by", sa.String(64)))
        table.add_column(sa.Column("overdue_notified_at", TIME))
        table.create_index("ix_retro_items_owner", ["owner", "state"])
    op.create_table(
        "retro_votes",
        sa.Column("id", ID, primary_key=True),
        sa.Column("item_id", ID, sa.ForeignKey("retro_items.id"), nullable=False),
        sa.Column("occurrence_id", ID, sa.ForeignKey("ritual_occurrences.id"), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.UniqueConstraint("item_id", "user_id"),
    )
    op.create_index("ix_retro_votes_occurrence_user", "retro_votes",
                    ["occurrence_id", "user_id"])
    op.create_table(
        "ritual_prompts",
        sa.Column("id", ID, primary_key=True),
        sa.Column("occurrence_id", ID, sa.ForeignKey("ritual_occurrences.id"), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("prompt_at", TIME, nullable=False),
        sa.Column("closes_at", TIME, nullable=False),
        sa.Column("sent_at", TIME),
        sa.UniqueConstraint("occurrence_id", "user_id"),
    )
    op.create_index("ix_ritual_prompts_due", "ritual_prompts", ["sent_at", "prompt_at"])
    op.create_table(
        "slack_user_zones",
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("fetched_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("team_id", "user_id"),
    )


def downgrade() -> None:
    op.drop_table("slack_user_zones")
    op.drop_index("ix_ritual_prompts_due", "ritual_prompts")
    op.drop_table("ritual_prompts")
    op.drop_index("ix_retro_votes_occurrence_user", "retro_votes")
    op.drop_table("retro_votes")
    with op.batch_alter_table("retro_items") as table:
        table.drop_index("ix_retro_items_owner")
        for column in ("overdue_notified_at", "done_by", "anonymous", "number"):
            table.drop_column(column)
    with op.batch_alter_table("ritual_updates") as table:
        table.drop_column("parts")
        table.drop_column("answers")
    with op.batch_alter_table("ritual_occurrences") as table:
        for column in ("outcome_decisions", "outcome_by", "outcome", "votes_per_person", "mode",
                       "questions"):
            table.drop_column(column)
    with op.batch_alter_table("ritual_schedules") as table:
        for column in ("votes_per_person", "mode", "questions"):
            table.drop_column(column)
