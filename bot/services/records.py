"""What every register's records share."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from bot.models import Base

Record = TypeVar("Record", bound=Base)


def lock(session: Session, record: Record) -> Record:
    """Take the record's row lock and re-read it, so that concurrent changes (a double click,
    two people acting at once) queue up and each sees the state the previous one left.

    On SQLite every write transaction already runs alone (BEGIN IMMEDIATE); the re-read remains.
    """
    model = type(record)
    key = inspect(model).primary_key[0]
    session.execute(select(key).where(key == getattr(record, key.key)).with_for_update())
    session.refresh(record)
    return record
