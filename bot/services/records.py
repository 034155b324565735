"""What every register's records share: finding them by reference or id, and locking them."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from bot.errors import NotFound
from bot.models import Base
from bot.services.refs import parse_ref

Record = TypeVar("Record", bound=Base)


def find_by_ref(session: Session, model: type[Record], team_id: str, ref: str, noun: str,
                *, lock: bool = False) -> Record:
    """The record named by `ref` (`D-12`) in the workspace, or a NotFound that says so."""
    prefix: str = model.ref_prefix  # type: ignore[attr-defined]
    number = parse_ref(ref, prefix, noun)
    query = select(model).where(model.team_id == team_id,  # type: ignore[attr-defined]
                                model.number == number)  # type: ignore[attr-defined]
    record = session.scalars(_locked(model, query) if lock else query).unique().one_or_none()
    if record is None:
        raise NotFound(f"There is no {noun} {prefix}-{number} in this workspace.")
    return record


def find_by_id(session: Session, model: type[Record], record_id: int, noun: str,
               *, team_id: str | None = None, lock: bool = False) -> Record:
    """The record behind a button or form (never one of another workspace), or a NotFound."""
    query = select(model).where(inspect(model).primary_key[0] == record_id)
    record = session.scalars(_locked(model, query) if lock else query).unique().one_or_none()
    if record is None or (team_id is not None
                          and record.team_id != team_id):  # type: ignore[attr-defined]
        raise NotFound(f"That {noun} no longer exists.")
    return record


def _locked(model: type[Base], query: Any) -> Any:
    # Only the record's own row: PostgreSQL refuses to lock the nullable side of an outer join.
    return query.with_for_update(of=model).execution_options(populate_existing=True)


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
