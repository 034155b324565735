"""The portal's audit log and "changed this week" read a project's events newest first.

Revision ID: 0019
Revises: 0012
Create Date: 2026-12-04
"""

from alembic import op

revision = "0019"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_events_project_at", "audit_events", ["project_id", "at", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_project_at", table_name="audit_events")
