"""Registers at scale: indexes for keyset paging, the Home's per-person lookups and decision
links; on PostgreSQL, decision search reads a stored `tsvector` rather than computing one a row.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# name: (table, columns). Mirrors the `Index(...)` entries of bot/models/.
INDEXES = {
    # `/decision list` pages by (created_at, id) within a project, and the Home counts recent ones.
    "ix_decisions_project_created": ("decisions", ["project_id", "created_at", "id"]),
    # The Home finds a person's projects and records by who made or owns them. The workspace
    # leads, so that even without ANALYZE statistics SQLite prefers these two-column matches to
    # the (team_id, number) index, which would read the whole workspace.
    "ix_decisions_created_by": ("decisions", ["team_id", "created_by", "project_id"]),
    "ix_hypotheses_owner": ("hypotheses", ["team_id", "owner", "project_id"]),
    "ix_hypotheses_created_by": ("hypotheses", ["team_id", "created_by", "project_id"]),
    "ix_risks_owner": ("risks", ["team_id", "owner", "project_id"]),
    "ix_role_assignments_user": ("role_assignments", ["user_id", "project_id"]),
}


# The text 0001's expression index covered; now a stored column (outside the models, like the
# index and SQLite's FTS5 table): matching a row costs a lookup instead of parsing its text.
DECISION_TEXT = ("coalesce(title, '') || ' ' || coalesce(context, '') || ' ' || "
                 "coalesce(decision, '') || ' ' || coalesce(consequences, '')")


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)
    # A decision's `superseded_by` (cards, show, export) looks the successor up by this column.
    # Partial: with every row's NULL in it, SQLite's ANALYZE statistics call the index useless
    # and each lookup scans the table (an export of a million decisions never finished).
    not_null = sa.text("supersedes_id IS NOT NULL")
    op.create_index("ix_decisions_supersedes_id", "decisions", ["supersedes_id"],
                    sqlite_where=not_null, postgresql_where=not_null)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_decisions_fts")
        op.execute(f"ALTER TABLE decisions ADD COLUMN search_vector tsvector GENERATED ALWAYS "
                   f"AS (to_tsvector('english', {DECISION_TEXT})) STORED")
        op.execute("CREATE INDEX ix_decisions_fts ON decisions USING gin (search_vector)")


def downgrade() -> None:
    op.drop_index("ix_decisions_supersedes_id", table_name="decisions")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE decisions DROP COLUMN search_vector")  # drops its index too
        op.execute(f"CREATE INDEX ix_decisions_fts ON decisions "
                   f"USING gin (to_tsvector('english', {DECISION_TEXT}))")
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
