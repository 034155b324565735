"""Short references that people can type: `D-12`, `H-3`, `G-2`, `R-4`, `INC-7`, per workspace.

References are gapless, so a number is taken in the transaction of its record and its workspace
counter row stays locked until that transaction ends. On PostgreSQL a new record therefore gets
its number last (`number_at_commit`): it is written with a provisional number and its audit
event and outbox rows carry a placeholder reference (`Referenced.ref`); one statement then takes
the number, writes it into the record and puts the reference in place of the placeholder, and
the transaction commits. Concurrent writers of one workspace queue on the counter row only for
that statement and the commit, not for the Python that builds the record, its card and its
audit event. SQLite runs one writer at a time anyway, so there the number is taken at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, event, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql import Executable

from bot.errors import InvalidInput
from bot.models import AuditEvent, OutboxMessage, RefCounter, Referenced, pending_ref, utcnow

REF_PATTERN = re.compile(r"^([A-Za-z]+)-(\d{1,9})$")
# Keys of `Session.info`: records waiting for their number, and the rows of this transaction
# that may carry their placeholder reference (kept by `bot.outbox` and `audit.record_event`).
PENDING = "refs_pending"
CARRIERS = "refs_carriers"
HELD_AUDIT = "refs_held_audit"
SLOT = "refs_slot"
# Provisional numbers are -(backend pid * SLOTS + slot): unique among open transactions, since
# a pid belongs to one live connection and a provisional number never outlives its transaction.
SLOTS = 100


def _upsert(dialect: str) -> Executable:
    # On the table, not the mapped class: an ORM-enabled INSERT goes through the ORM's bulk
    # machinery, which cost more than the statement itself.
    counters = RefCounter.__table__
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(counters).values(
        team_id=bindparam("team_id"), prefix=bindparam("prefix"), last_value=1)
    return statement.on_conflict_do_update(
        index_elements=[counters.c.team_id, counters.c.prefix],
        set_={"last_value": counters.c.last_value + 1},
    ).returning(counters.c.last_value)


# Built once: a statement constructed per call cost more than its execution (it missed the
# compiled cache's fast path and rebuilt the ON CONFLICT clause every time).
NEXT_NUMBER = {dialect: _upsert(dialect) for dialect in ("postgresql", "sqlite")}


def next_number(session: Session, team_id: str, prefix: str) -> int:
    """Hand out the next number for `prefix` in the workspace now; safe under concurrent writers.

    One upsert: the first number creates the counter, later ones take its row lock to increment,
    so two transactions can never receive the same number."""
    connection = session.connection()
    return connection.execute(NEXT_NUMBER[connection.dialect.name],
                              {"team_id": team_id, "prefix": prefix}).scalar_one()


@dataclass
class _Pending:
    record: Referenced
    provisional: int


def number_at_commit(session: Session, model: type[Referenced], team_id: str) -> int:
    """The number to give a new `model` record in the workspace: the real one on SQLite; on
    PostgreSQL a provisional (negative) one, replaced by `settle` or at commit at the latest.

    Register the record with `pending(session, record)` once it is built."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return next_number(session, team_id, model.ref_prefix)
    slot = session.info.get(SLOT, 0) + 1
    if slot >= SLOTS:  # a bulk write: take numbers at once rather than run out of slots
        return next_number(session, team_id, model.ref_prefix)
    session.info[SLOT] = slot
    pid = session.connection().connection.dbapi_connection.info.backend_pid  # type: ignore
    return -(pid * SLOTS + slot)


def pending(session: Session, record: Referenced) -> None:
    """Note that `record` holds a provisional number (see `number_at_commit`)."""
    if record.number < 0:
        session.info.setdefault(PENDING, []).append(_Pending(record, record.number))


def carries_refs(session: Session, row: OutboxMessage) -> None:
    """Note an outbox row written in this transaction: it may carry a placeholder reference."""
    if session.info.get(PENDING):
        session.info.setdefault(CARRIERS, []).append(row)


def holds_audit(session: Session, event: AuditEvent) -> bool:
    """Keep `event` out of the session while a number is pending: the audit log is append-only,
    so an event naming the record is written once, by `settle`, with its reference in place.
    False (the caller adds the event itself) when nothing is pending."""
    if not session.info.get(PENDING):
        return False
    session.info.setdefault(HELD_AUDIT, []).append(event)
    return True


_SETTLE = """
WITH counter AS (
    INSERT INTO ref_counters (team_id, prefix, last_value) VALUES (:team_id, :prefix, 1)
    ON CONFLICT (team_id, prefix) DO UPDATE SET last_value = ref_counters.last_value + 1
    RETURNING last_value, :prefix || '-' || last_value AS ref
), record AS (
    UPDATE {table} SET number = counter.last_value FROM counter
    WHERE {table}.team_id = :team_id AND {table}.number = :provisional
), queued AS (
    UPDATE outbox SET payload = replace(payload::text, :placeholder, counter.ref)::jsonb
    FROM counter WHERE outbox.id = ANY(:outbox_ids)
), audit AS (
    INSERT INTO audit_events (team_id, project_id, actor, at, action, entity_type, entity_id,
                              entity_ref, before, after)
    SELECT e.doc->>'team_id', (e.doc->>'project_id')::bigint, e.doc->>'actor',
           (e.doc->>'at')::timestamptz, e.doc->>'action', e.doc->>'entity_type',
           (e.doc->>'entity_id')::bigint,
           replace(e.doc->>'entity_ref', :placeholder, counter.ref),
           replace(NULLIF(e.doc->'before', 'null')::text, :placeholder, counter.ref)::jsonb,
           replace(NULLIF(e.doc->'after', 'null')::text, :placeholder, counter.ref)::jsonb
    FROM counter, jsonb_array_elements(CAST(:events AS jsonb)) WITH ORDINALITY AS e(doc, n)
    ORDER BY e.n
)
SELECT last_value FROM counter
"""
_settle_statements: dict[str, Any] = {}


def _settle_statement(table: str) -> Any:
    statement = _settle_statements.get(table)
    if statement is None:
        statement = _settle_statements[table] = text(_SETTLE.format(table=table))
    return statement


def _event_values(event: AuditEvent, done: dict[str, str]) -> dict[str, Any]:
    """An held audit event as the settle statement reads it, with the references already
    taken in this transaction put in place."""
    values = {"team_id": event.team_id, "project_id": event.project_id, "actor": event.actor,
              "at": (event.at or utcnow()).isoformat(), "action": event.action,
              "entity_type": event.entity_type, "entity_id": event.entity_id,
              "entity_ref": event.entity_ref, "before": event.before, "after": event.after}
    if not done:
        return values
    encoded = json.dumps(values)
    for placeholder, ref in done.items():
        encoded = encoded.replace(placeholder, ref)
    return json.loads(encoded)  # type: ignore[no-any-return]


def settle(session: Session) -> None:
    """Give every record of the transaction still holding a provisional number its real one,
    one statement each (see the module's docstring), and write the audit events held meanwhile.
    Services call it as their last step, so that the reply can name the reference;
    `Session.commit` calls it in any case."""
    waiting: list[_Pending] = session.info.pop(PENDING, None) or []
    if not waiting:
        return
    session.flush()
    carriers: list[OutboxMessage] = session.info.pop(CARRIERS, None) or []
    held: list[AuditEvent] = session.info.pop(HELD_AUDIT, None) or []
    outbox_ids = [row.id for row in carriers]
    done: dict[str, str] = {}
    for index, item in enumerate(waiting):
        record = item.record
        placeholder = pending_ref(record.ref_prefix, item.provisional)
        last = index == len(waiting) - 1
        events = [_event_values(event, done) for event in held] if last else []
        number = session.execute(_settle_statement(record.__tablename__), {  # type: ignore
            "team_id": record.team_id, "prefix": record.ref_prefix,
            "provisional": item.provisional, "placeholder": placeholder,
            "outbox_ids": outbox_ids, "events": json.dumps(events),
        }).scalar_one()
        set_committed_value(record, "number", number)
        done[placeholder] = record.ref
    # What the statements rewrote is read again from the database if anyone asks.
    for row in carriers:
        session.expire(row, ["payload"])


@event.listens_for(Session, "before_commit")
def _settle_before_commit(session: Session) -> None:
    if session.info.get(PENDING):
        settle(session)


@event.listens_for(Session, "after_transaction_end")
def _forget_at_end(session: Session, transaction: Any) -> None:
    if transaction.parent is not None:  # a savepoint: the outer transaction goes on
        return
    for key in (PENDING, CARRIERS, HELD_AUDIT, SLOT):
        session.info.pop(key, None)


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
