"""Migration 0016 builds exactly what the ritual models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.database import Database
from bot.models import Base

TABLES = ("ritual_", "retro_", "slack_user_zones")


def test_migration_matches_the_ritual_models(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)
    assert [d for d in diffs if any(name in repr(d) for name in TABLES)] == []
