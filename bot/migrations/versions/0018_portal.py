"""Indexes of the portal's pages: a project's audit events newest first (the audit log and
"changed this week"), and its hypotheses of one status newest first (the hypothesis board,
as `/hypothesis list`), which PostgreSQL otherwise reads along the whole table's created_at.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_events_project_at", "audit_events", ["project_id", "at", "id"])
    op.create_index("ix_hypotheses_project_status", "hypotheses",
                    ["project_id", "status", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_hypotheses_project_status", table_name="hypotheses")
    op.drop_index("ix_audit_events_project_at", table_name="audit_events")
