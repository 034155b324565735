"""Short references that people can type: `D-12`, `H-3`, `G-2`, `R-4`, `INC-7`, per workspace."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.errors import InvalidInput
from bot.models import RefCounter

REF_PATTERN = re.compile(r"^([A-Za-z]+)-(\d{1,9})$")


def next_number(session: Session, team_id: str, prefix: str) -> int:
    """Hand out the next number for `prefix` in the workspace; safe under concurrent writers."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # One upsert: the first number creates the counter, later ones take its row lock to increment,
    # so two transactions can never receive the same number.
    statement = insert(RefCounter).values(team_id=team_id, prefix=prefix, last_value=1)
    return session.execute(
        statement.on_conflict_do_update(
            index_elements=[RefCounter.team_id, RefCounter.prefix],
            set_={"last_value": RefCounter.last_value + 1},
        ).returning(RefCounter.last_value)
    ).scalar_one()


def parse_ref(text: str, prefix: str, noun: str) -> int:
    """The number in a reference such as `D-12`; a clear error for anything else."""
    match = REF_PATTERN.match(text.strip())
    if not match or match.group(1).upper() != prefix:
        raise InvalidInput(f"`{text}` is not a {noun} reference: expected {prefix}-<number>, "
                           f"e.g. {prefix}-12.")
    return int(match.group(2))


def current_value(session: Session, team_id: str, prefix: str) -> int:
    value = session.scalar(
        select(RefCounter.last_value).where(
            RefCounter.team_id == team_id, RefCounter.prefix == prefix
        )
    )
    return value or 0
