"""The outbox: Slack calls queued in the same transaction as the change that caused them.

Queuing lives here and has no Slack imports; `bot.delivery` posts what is queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
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
    """
    now = utcnow()
    _drop_stale_updates(session)
    earlier = aliased(OutboxMessage)
    blocked_by_earlier = exists().where(
        earlier.message_key == OutboxMessage.message_key,
        earlier.id < OutboxMessage.id,
        earlier.status.in_(UNFINISHED),
    )
    rows = session.scalars(
        select(OutboxMessage)
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
        .limit(limit)
        .with_for_update(skip_locked=True, of=OutboxMessage)
    ).all()
    claimed = []
    for row in rows:
        if row.status == OutboxStatus.SENDING and row.payload.get(IN_FLIGHT_FLAG):
            row.payload = {**_without(row.payload, IN_FLIGHT_FLAG), MAYBE_SENT_FLAG: True}
        row.status = OutboxStatus.SENDING
        row.claimed_until = now + lease
        row.attempts += 1
        claimed.append(
            Claimed(row.id, row.team_id, row.method, dict(row.payload), row.message_key,
                    row.attempts, row.created_at)
        )
    return claimed


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
    """
    row = _leased(session, row_id, attempts)
    if row is None:
        return False
    row.claimed_until = utcnow() + lease
    row.payload = {**row.payload, IN_FLIGHT_FLAG: True}
    return True


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
