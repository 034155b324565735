"""Incidents: impact, source links and alert labels; follow-up items; silences made from Slack;
repeated promotion announcements; the cache of Slack user and channel names.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("incidents") as table:
        table.add_column(sa.Column("impact", sa.Text(), nullable=False, server_default=""))
        table.add_column(sa.Column("source_url", sa.String(2000)))
        table.add_column(sa.Column("runbook_url", sa.String(2000)))
        table.add_column(sa.Column("dashboard_url", sa.String(2000)))
        table.add_column(sa.Column("alert_labels", JSON))
        table.add_column(sa.Column("silenceable", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.create_table(
        "incident_follow_ups",
        sa.Column("id", ID, primary_key=True),
        sa.Column("incident_id", ID, sa.ForeignKey("incidents.id"), nullable=False, index=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(64)),
        sa.Column("due_date", sa.Date()),
        sa.Column("url", sa.String(2000)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("done_at", TIME),
        sa.Column("done_by", sa.String(64)),
        sa.Column("overdue_notified_at", TIME),
        sa.UniqueConstraint("incident_id", "position"),
    )
    op.create_index("ix_incident_follow_ups_owner", "incident_follow_ups",
                    ["team_id", "owner", "status"])
    op.create_table(
        "incident_silences",
        sa.Column("id", ID, primary_key=True),
        sa.Column("incident_id", ID, sa.ForeignKey("incidents.id"), nullable=False, index=True),
        sa.Column("silence_id", sa.String(64), nullable=False),
        sa.Column("matchers", JSON, nullable=False),
        sa.Column("starts_at", TIME, nullable=False),
        sa.Column("ends_at", TIME, nullable=False),
        sa.Column("until_resolved", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("expired_at", TIME),
    )
    with op.batch_alter_table("promotions") as table:
        table.add_column(sa.Column("repeats", sa.Integer(), nullable=False, server_default="0"))
        table.add_column(sa.Column("repeated_at", TIME))
    op.create_table(
        "slack_names",
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("slack_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("seen_at", TIME, nullable=False),
        sa.Column("fetched_at", TIME),
        sa.PrimaryKeyConstraint("team_id", "slack_id"),
    )


def downgrade() -> None:
    op.drop_table("slack_names")
    with op.batch_alter_table("promotions") as table:
        table.drop_column("repeated_at")
        table.drop_column("repeats")
    op.drop_table("incident_silences")
    op.drop_index("ix_incident_follow_ups_owner", table_name="incident_follow_ups")
    op.drop_table("incident_follow_ups")
    with op.batch_alter_table("incidents") as table:
        for column in ("silenceable", "alert_labels", "dashboard_url", "runbook_url",
                       "source_url", "impact"):
            table.drop_column(column)
