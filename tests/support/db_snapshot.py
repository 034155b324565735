"""Every row of every table, to show that a refused request left the database as it was."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.database import Database
from bot.models import schema


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """`{table: rows}` in primary-key order: registers, audit log, outbox, everything."""
    with db.engine.connect() as connection:
        return {
            table.name: [tuple(row) for row in connection.execute(
                select(table).order_by(*table.primary_key.columns))]
            for table in schema().sorted_tables
        }


def changed_tables(before: dict[str, list[tuple[Any, ...]]], db: Database) -> list[str]:
    """The tables whose rows differ from `before`."""
    after = snapshot(db)
    return [name for name in after if after[name] != before.get(name)]
