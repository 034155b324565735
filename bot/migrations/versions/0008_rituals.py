"""Rituals: standup and retrospective schedules, occurrences, updates, retro items, skips, away.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "ritual_schedules",
        sa.Column("id", ID, primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("cron", sa.String(120), nullable=False),
        sa.Column("every_weeks", sa.Integer(), nullable=False),
        sa.Column("anchor_week", sa.Date(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("answer_window_minutes", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("members", JSON, nullable=False),
        sa.Column("checked_until", TIME, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("project_id", "kind"),
    )
    op.create_table(
        "ritual_occurrences",
        sa.Column("id", ID, primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("schedule_id", ID, sa.ForeignKey("ritual_schedules.id")),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("scheduled_for", TIME, nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("skip_reason", sa.String(200)),
        sa.Column("participants", JSON, nullable=False),
        sa.Column("period_start", TIME),
        sa.Column("posted_at", TIME),
        sa.Column("remind_at", TIME),
        sa.Column("reminded_at", TIME),
        sa.Column("closes_at", TIME),
        sa.Column("closed_at", TIME),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.UniqueConstraint("project_id", "kind", "scheduled_for"),
    )
    op.create_index("ix_ritual_occurrences_status", "ritual_occurrences",
                    ["status", "closes_at"])
    op.create_table(
        "ritual_updates",
        sa.Column("id", ID, primary_key=True),
        sa.Column("occurrence_id", ID, sa.ForeignKey("ritual_occurrences.id"), nullable=False,
                  index=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("yesterday", sa.Text(), nullable=False),
        sa.Column("today", sa.Text(), nullable=False),
        sa.Column("blockers", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("message_ts", sa.String(32)),
        sa.Column("event_id", sa.String(64)),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("occurrence_id", "message_ts"),
    )
    op.create_table(
        "retro_items",
        sa.Column("id", ID, primary_key=True),
        sa.Column("occurrence_id", ID, sa.ForeignKey("ritual_occurrences.id"), nullable=False,
                  index=True),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(64)),
        sa.Column("due_date", sa.Date()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("done_at", TIME),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_table(
        "ritual_skips",
        sa.Column("id", ID, primary_key=True),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("on_date", sa.Date(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.UniqueConstraint("project_id", "kind", "on_date"),
    )
    op.create_table(
        "ritual_away",
        sa.Column("id", ID, primary_key=True),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("until", sa.Date(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.UniqueConstraint("project_id", "user_id"),
    )


def downgrade() -> None:
    op.drop_table("ritual_away")
    op.drop_table("ritual_skips")
    op.drop_table("retro_items")
    op.drop_table("ritual_updates")
    op.drop_index("ix_ritual_occurrences_status", table_name="ritual_occurrences")
    op.drop_table("ritual_occurrences")
    op.drop_table("ritual_schedules")
