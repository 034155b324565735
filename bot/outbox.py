"""The outbox: Slack calls queued in the same transaction as the change that caused them.

Queuing lives here and has no Slack imports; `bot.delivery` posts what is queued.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, cast, exists, func, literal, or_, select, tuple_, update
from sqlalchemy.orm import Session, aliased

from bot.models import OutboxMessage, OutboxStatus, SlackMessage, utcnow
from bot.services.refs import carries_refs

WAKE_FLAG = "outbox_queued"
# Notes the worker keeps in a payload between attempts (never sent to Slack):
JOINED_FLAG = "_joined"  # it already joined the channel once for this call
MAYBE_SENT_FLAG = "_maybe_sent"  # an attempt got no answer: Slack may have acted on it
IN_FLIGHT_FLAG = "_in_flight"  # a call went out under the current lease (see `renew`)
DEFAULT_LEASE = timedelta(seconds=60)
# How `last_error` of a call waiting for Slack's `Retry-After` begins (see `hold`).
RATE_LIMITED = "ratelimited"
UNFINISHED = (OutboxStatus.PENDING, OutboxStatus.SENDING)
# Calls that replace the whole state of their target: of several pending calls of one of these
# methods under one key, only the latest is worth sending (a burst of edits sends once).
COALESCED = ("chat.update", "views.publish")


def enqueue(
    session: Session, team_id: str, method: str, payload: dict[str, Any], key: str | None = None
) -> OutboxMessage:
    """Queue one Web API call; calls that share `key` are delivered in the order queued."""
    row = OutboxMessage(team_id=team_id, method=method, payload=payload, message_key=key)
    session.add(row)
    carries_refs(session, row)
    session.info[WAKE_FLAG] = True
    return row


def post_message(
    session: Session, team_id: str, channel: str, message: dict[str, Any], key: str | None = None,
    thread_key: str | None = None,
) -> OutboxMessage:
    """Queue a `chat.postMessage`; with `key`, later `update_message` calls edit this message.

    With `thread_key`, the message is a reply in the thread of the keyed message: it shares that
    key, so it waits for the message to be posted and keeps its place among the edits.
    """
    payload = {"channel": channel, **message}
    if thread_key:
        if key:
            raise ValueError("a thread reply cannot have a key of its own")
        payload["thread_key"] = thread_key
        key = thread_key
    return enqueue(session, team_id, "chat.postMessage", payload, key)


def publish_view(
    session: Session, team_id: str, user_id: str, view: dict[str, Any], key: str
) -> OutboxMessage:
    """Queue a `views.publish` of `user_id`'s App Home; of several pending under `key`, only the
    latest is sent."""
    return enqueue(session, team_id, "views.publish", {"user_id": user_id, "view": view}, key)


def update_message(
    session: Session, team_id: str, key: str, message: dict[str, Any]
) -> OutboxMessage:
    """Queue a `chat.update` of the message posted under `key`."""
    return enqueue(session, team_id, "chat.update", dict(message), key)


@dataclass(frozen=True)
class Claimed:
    """An outbox row leased to one worker for delivery."""

    id: int
    team_id: str
    method: str
    payload: dict[str, Any]
    key: str | None
    attempts: int
    created_at: datetime


def claim(session: Session, limit: int = 20, lease: timedelta = DEFAULT_LEASE) -> list[Claimed]:
    """Lease up to `limit` due rows to the caller, oldest first, keeping per-key order.

    Rows whose lease ran out (a worker died mid-delivery) are due again; one whose call was out
    when it did may have reached Slack, so it is looked up before being posted again. On
    PostgreSQL the rows are locked with SKIP LOCKED, so replicas never lease the same row.
    `attempts` is the lease's fencing token: every claim increments it, so a worker whose row was
    taken over can tell (see `renew` and the `mark_*` functions).

    One statement leases the batch (`UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)
    RETURNING`); only rows taken over from a worker that died mid-call are touched again.
    """
    now = utcnow()
    _drop_stale_updates(session)
    connection = session.connection()
    claimed = [Claimed(*row) for row in connection.execute(
        _claim_statement(connection.dialect.name),
        {"now": now, "until_": now + lease, "limit": limit})]
    claimed.sort(key=lambda row: row.id)
    for index, row in enumerate(claimed):
        # Only a row whose call was out under an earlier lease still carries the flag (every
        # outcome and hand-back removes it): Slack may have acted on that call.
        if row.payload.get(IN_FLIGHT_FLAG):
            payload = {**_without(row.payload, IN_FLIGHT_FLAG), MAYBE_SENT_FLAG: True}
            session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id)
                            .values(payload=payload)
                            .execution_options(synchronize_session=False))
            claimed[index] = replace(row, payload=payload)
    return claimed


_CLAIM: dict[str, Any] = {}


def _claim_statement(dialect: str) -> Any:
    """The batch lease, built once per dialect (its plan is then cached by SQLAlchemy)."""
    if dialect in _CLAIM:
        return _CLAIM[dialect]
    earlier = aliased(OutboxMessage)
    blocked_by_earlier = exists().where(
        earlier.message_key == OutboxMessage.message_key,
        earlier.id < OutboxMessage.id,
        earlier.status.in_(UNFINISHED),
    )
    now = bindparam("now", type_=OutboxMessage.next_attempt_at.type)
    due = (
        select(OutboxMessage.id)
        .where(
            or_(
                OutboxMessage.status == OutboxStatus.PENDING,
                and_(OutboxMessage.status == OutboxStatus.SENDING,
                     OutboxMessage.claimed_until < now),
            ),
            OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.message_key.is_(None), ~blocked_by_earlier),
        )
        .order_by(OutboxMessage.id)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True, of=OutboxMessage)
    )
    rows: Any = OutboxMessage.__table__
    _CLAIM[dialect] = statement = (
        update(rows)
        .where(rows.c.id.in_(due.scalar_subquery()))
        .values(status=OutboxStatus.SENDING,
                claimed_until=bindparam("until_", type_=rows.c.claimed_until.type),
                attempts=rows.c.attempts + 1)
        .returning(rows.c.id, rows.c.team_id, rows.c.method, rows.c.payload,
                   rows.c.message_key, rows.c.attempts, rows.c.created_at)
    )
    return statement


def _drop_stale_updates(session: Session) -> None:
    """A pending `chat.update` (or `views.publish`) with a newer pending call of the same method
    under the same key is never sent: the newer one carries the whole latest state."""
    newer = aliased(OutboxMessage)
    session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.method.in_(COALESCED),
            OutboxMessage.status == OutboxStatus.PENDING,
            exists().where(
                newer.message_key == OutboxMessage.message_key,
                newer.method == OutboxMessage.method,
                newer.status == OutboxStatus.PENDING,
                newer.id > OutboxMessage.id,
            ),
        )
        .values(status=OutboxStatus.SUPERSEDED)
        .execution_options(synchronize_session=False)
    )


def _without(payload: dict[str, Any], flag: str) -> dict[str, Any]:
    return {name: value for name, value in payload.items() if name != flag}


def _leased(session: Session, row_id: int, attempts: int | None) -> OutboxMessage | None:
    """The row, if the caller still holds its lease (`attempts` is the token `claim` handed out;
    None skips the check). A row another worker took over is left to that worker."""
    row = session.get_one(OutboxMessage, row_id, with_for_update=attempts is not None)
    if attempts is not None and (row.status != OutboxStatus.SENDING or row.attempts != attempts):
        return None
    if IN_FLIGHT_FLAG in row.payload:
        row.payload = _without(row.payload, IN_FLIGHT_FLAG)
    return row


def renew(session: Session, row_id: int, attempts: int, lease: timedelta) -> bool:
    """Before a call goes out: extend the caller's lease to a full `lease` from now and note that
    the call is out. False when the row is no longer the caller's (its lease ran out and another
    worker took it over): the caller must not send it.

    The worker keeps every call to well within the lease, so nobody takes over a row while its
    call may still reach Slack; a row taken over after its call went out is looked up first.
    One fenced statement: the lease and the flag change only if the caller's token still holds.
    """
    connection = session.connection()
    return connection.execute(_statements(connection.dialect.name).renew, {
        "row_id": row_id, "token": attempts, "until_": utcnow() + lease}).first() is not None


@dataclass(frozen=True)
class Sent:
    """A call Slack accepted, to be recorded (see `mark_sent_batch`)."""

    id: int
    attempts: int
    key: str | None = None  # a keyed post: remember where it landed
    channel: str | None = None
    ts: str | None = None


def mark_sent_batch(session: Session, sent: list[Sent]) -> set[int]:
    """Record several deliveries in one statement (and where keyed posts landed in one more);
    the ids recorded. A row whose lease the caller lost meanwhile is left to its new owner."""
    if not sent:
        return set()
    connection = session.connection()
    statements = _statements(connection.dialect.name)
    recorded = set(connection.execute(statements.mark_sent, {
        "now_": utcnow(), "tokens": [(row.id, row.attempts) for row in sent]}).scalars())
    landed = [{"key": row.key, "channel": row.channel, "ts": row.ts, "created_at": utcnow()}
              for row in sent if row.id in recorded and row.key and row.channel and row.ts]
    if landed:
        connection.execute(statements.remember_post, landed)
    return recorded


def posted_messages(session: Session, keys: list[str]) -> dict[str, tuple[str, str]]:
    """Where the messages queued under `keys` were posted (channel, ts), for those that were:
    one query for a whole batch."""
    if not keys:
        return {}
    connection = session.connection()
    return {key: (channel, ts) for key, channel, ts in connection.execute(
        _statements(connection.dialect.name).posted, {"keys": keys})}


@dataclass(frozen=True)
class _Statements:
    renew: Any
    mark_sent: Any
    remember_post: Any
    posted: Any


_STATEMENTS: dict[str, _Statements] = {}


def _statements(dialect: str) -> _Statements:
    """The worker's per-call statements, built once per dialect on the tables themselves (run
    on the session's connection: the ORM's statement machinery cost more than the SQL)."""
    if dialect in _STATEMENTS:
        return _STATEMENTS[dialect]
    rows: Any = OutboxMessage.__table__
    messages: Any = SlackMessage.__table__
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB
        from sqlalchemy.dialects.postgresql import insert as dialect_insert

        flagged = rows.c.payload.op("||")(
            cast(func.jsonb_build_object(IN_FLIGHT_FLAG, True), JSONB))
        unflagged = rows.c.payload.op("-")(literal(IN_FLIGHT_FLAG))
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert

        flagged = func.json_set(rows.c.payload, f"$.{IN_FLIGHT_FLAG}", func.json("true"))
        unflagged = func.json_remove(rows.c.payload, f"$.{IN_FLIGHT_FLAG}")
    held = and_(rows.c.status == OutboxStatus.SENDING,
                tuple_(rows.c.id, rows.c.attempts).in_(bindparam("tokens", expanding=True)))
    _STATEMENTS[dialect] = statements = _Statements(
        renew=update(rows)
        .where(rows.c.id == bindparam("row_id"), rows.c.status == OutboxStatus.SENDING,
               rows.c.attempts == bindparam("token"))
        .values(claimed_until=bindparam("until_", type_=rows.c.claimed_until.type),
                payload=flagged)
        .returning(rows.c.id),
        mark_sent=update(rows).where(held)
        .values(status=OutboxStatus.SENT,
                delivered_at=bindparam("now_", type_=rows.c.delivered_at.type),
                claimed_until=None, last_error=None, payload=unflagged)
        .returning(rows.c.id),
        remember_post=dialect_insert(messages).on_conflict_do_nothing(
            index_elements=[messages.c.key]),
        posted=select(messages.c.key, messages.c.channel, messages.c.ts)
        .where(messages.c.key.in_(bindparam("keys", expanding=True))),
    )
    return statements


def mark_sent(session: Session, row_id: int, *, channel: str | None = None,
              ts: str | None = None, key: str | None = None,
              attempts: int | None = None) -> bool:
    """Record a delivery; a keyed post remembers its `ts` so that updates edit it.

    False (and nothing written) if the caller lost the row's lease meanwhile."""
    row = _leased(session, row_id, attempts)
    if row is None:
        return False
    row.status = OutboxStatus.SENT
    row.delivered_at = utcnow()
    row.claimed_until = None
    row.last_error = None
    if key and channel and ts and session.get(SlackMessage, key) is None:
        session.add(SlackMessage(key=key, channel=channel, ts=ts))
    return True


def mark_retry(session: Session, row_id: int, at: datetime, error: str,
               note: str | None = None, attempts: int | None = None) -> bool:
    row = _leased(session, row_id, attempts)
    if row is None:
        return False
    if note:
        row.payload = {**row.payload, note: True}
    row.status = OutboxStatus.PENDING
    row.next_attempt_at = at
    row.claimed_until = None
    row.last_error = error
    return True


def release(session: Session, row_id: int, at: datetime, attempts: int | None = None,
            reason: str | None = None) -> bool:
    """Hand a leased row back untried, due again at `at` (`reason`: why it waits)."""
    row = _leased(session, row_id, attempts)
    if row is None:
        return False
    if reason is not None:
        row.last_error = reason
    row.status = OutboxStatus.PENDING
    row.next_attempt_at = at
    row.claimed_until = None
    row.attempts -= 1
    return True


def mark_failed(session: Session, row_id: int, error: str, attempts: int | None = None) -> bool:
    row = _leased(session, row_id, attempts)
    if row is None:
        return False
    row.status = OutboxStatus.FAILED
    row.claimed_until = None
    row.last_error = error
    return True


def hold(session: Session, team_id: str, method: str, until: datetime, reason: str,
         channel: str | None = None) -> None:
    """Push the workspace's pending calls of `method` (in `channel` only, if given) to `until`:
    Slack rate-limits each workspace per method, and posting per channel. `reason` starts with
    `RATE_LIMITED`, so that `wake_backed_off` leaves these rows waiting."""
    conditions = [OutboxMessage.team_id == team_id, OutboxMessage.method == method,
                  OutboxMessage.status == OutboxStatus.PENDING,
                  OutboxMessage.next_attempt_at < until]
    if channel is not None:
        conditions.append(OutboxMessage.payload["channel"].as_string() == channel)
    session.execute(
        update(OutboxMessage).where(*conditions)
        .values(next_attempt_at=until, last_error=reason)
        .execution_options(synchronize_session=False)
    )


def wake_backed_off(session: Session, team_id: str) -> None:
    """Make the workspace's calls waiting out a backoff after a failure due now: Slack answers
    again, so they need not sit out the rest of a long backoff. Rate-limited calls keep waiting
    for the time Slack asked for."""
    now = utcnow()
    session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.team_id == team_id,
            OutboxMessage.status == OutboxStatus.PENDING,
            OutboxMessage.next_attempt_at > now,
            OutboxMessage.last_error.is_not(None),
            ~OutboxMessage.last_error.startswith(RATE_LIMITED),
        )
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )


def posted_message(session: Session, key: str) -> SlackMessage | None:
    """Where the message queued under `key` was posted, once it has been."""
    return session.get(SlackMessage, key)


def pending_count(session: Session) -> int:
    return session.scalar(
        select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.status.in_(UNFINISHED)
        )
    ) or 0


def pending_summary(session: Session) -> tuple[int, float]:
    """How many calls are not yet delivered, and the age in seconds of the oldest (0: none)."""
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxMessage.created_at)).where(
            OutboxMessage.status.in_(UNFINISHED))
    ).one()
    if oldest is None:
        return count or 0, 0.0
    if oldest.tzinfo is None:  # a MIN() on SQLite comes back as stored, without the type
        oldest = oldest.replace(tzinfo=UTC)
    return count, max(0.0, (utcnow() - oldest).total_seconds())
