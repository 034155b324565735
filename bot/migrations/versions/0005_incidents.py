"""Incidents and their timelines.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
OPEN = sa.text("status <> 'resolved'")


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", ID, primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), index=True),
        sa.Column("title", sa.String(150), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("commander", sa.String(64)),
        sa.Column("model", sa.String(200)),
        sa.Column("model_version", sa.String(64)),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("channel_id", sa.String(32)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("acknowledged_at", TIME),
        sa.Column("mitigated_at", TIME),
        sa.Column("resolved_at", TIME),
        sa.Column("last_update_at", TIME, nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("root_cause", sa.Text(), nullable=False),
        sa.Column("follow_ups", sa.Text(), nullable=False),
        sa.Column("alert_group_key", sa.String(1000)),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False, index=True),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("team_id", "number"),
    )
    op.create_index("uq_incidents_open_alert_group", "incidents", ["team_id", "alert_group_key"],
                    unique=True, sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index("ix_incidents_alert_group", "incidents", ["alert_group_key"])
    op.create_table(
        "incident_events",
        sa.Column("id", ID, primary_key=True),
        sa.Column("incident_id", ID, sa.ForeignKey("incidents.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("alert_fingerprint", sa.String(64)),
        sa.UniqueConstraint("incident_id", "kind", "alert_fingerprint"),
    )


def downgrade() -> None:
    op.drop_table("incident_events")
    op.drop_index("ix_incidents_alert_group", table_name="incidents")
    op.drop_index("uq_incidents_open_alert_group", table_name="incidents")
    op.drop_table("incidents")
