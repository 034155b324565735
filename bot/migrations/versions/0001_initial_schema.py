"""Initial schema: projects, references, audit log, decisions, outbox, job claims.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)

DECISION_TEXT = "coalesce(title,'') || ' ' || coalesce(context,'') || ' ' || " \
    "coalesce(decision,'') || ' ' || coalesce(consequences,'')"


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", ID, primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64)),
        sa.Column("created_at", TIME, nullable=False),
        sa.UniqueConstraint("team_id", "channel_id"),
    )
    op.create_table(
        "ref_counters",
        sa.Column("team_id", sa.String(32), primary_key=True),
        sa.Column("prefix", sa.String(8), primary_key=True),
        sa.Column("last_value", sa.Integer(), nullable=False),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", ID, primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False, index=True),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id")),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("entity_ref", sa.String(32), nullable=False),
        sa.Column("before", JSON),
        sa.Column("after", JSON),
    )
    op.create_index("ix_audit_events_entity", "audit_events", ["entity_type", "entity_id"])
    op.create_table(
        "decisions",
        sa.Column("id", ID, primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False, index=True),
        sa.Column("title", sa.String(150), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("consequences", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("deciders", JSON, nullable=False),
        sa.Column("source_permalink", sa.String(500)),
        sa.Column("supersedes_id", ID, sa.ForeignKey("decisions.id")),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False, index=True),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("team_id", "number"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", ID, primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("message_key", sa.String(128)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=False),
        sa.Column("claimed_until", TIME),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("delivered_at", TIME),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_key", "outbox", ["message_key", "id"])
    op.create_table(
        "slack_messages",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_table(
        "job_claims",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("claimed_at", TIME, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_extras()
    else:
        _sqlite_extras()


def _postgresql_extras() -> None:
    op.execute(
        "CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$"
    )
    op.execute(
        "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
    )
    op.execute(
        f"CREATE INDEX ix_decisions_fts ON decisions "
        f"USING gin (to_tsvector('english', {DECISION_TEXT}))"
    )


def _sqlite_extras() -> None:
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
            "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
        )
    op.execute(
        "CREATE VIRTUAL TABLE decisions_fts USING fts5("
        "title, context, decision, consequences, content='decisions', content_rowid='id')"
    )
    columns = "title, context, decision, consequences"
    new_values = "new.title, new.context, new.decision, new.consequences"
    old_values = "old.title, old.context, old.decision, old.consequences"
    op.execute(
        f"CREATE TRIGGER decisions_fts_insert AFTER INSERT ON decisions BEGIN "
        f"INSERT INTO decisions_fts(rowid, {columns}) VALUES (new.id, {new_values}); END"
    )
    op.execute(
        f"CREATE TRIGGER decisions_fts_delete AFTER DELETE ON decisions BEGIN "
        f"INSERT INTO decisions_fts(decisions_fts, rowid, {columns}) "
        f"VALUES ('delete', old.id, {old_values}); END"
    )
    op.execute(
        f"CREATE TRIGGER decisions_fts_update AFTER UPDATE ON decisions BEGIN "
        f"INSERT INTO decisions_fts(decisions_fts, rowid, {columns}) "
        f"VALUES ('delete', old.id, {old_values}); "
        f"INSERT INTO decisions_fts(rowid, {columns}) VALUES (new.id, {new_values}); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    else:
        op.execute("DROP TABLE decisions_fts")
    for table in ("job_claims", "slack_messages", "outbox", "decisions", "audit_events",
                  "ref_counters", "projects"):
        op.drop_table(table)
