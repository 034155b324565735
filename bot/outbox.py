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

WAKE_FLAG = "outbox_queued"
# Notes the worker keeps in a payload between attempts (never sent to Slack):
JOINED_FLAG = "_joined"  # it already joined the channel once for this call
MAYBE_SENT_FLAG = "_maybe_sent"  # an attempt got no answer: Slack may have acted on it
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


def claim(
    session: Session, limit: int = 20, lease: timedelta = timedelta(seconds=60)
) -> list[Claimed]:
    """Lease up to `limit` due rows to the caller, oldest first, keeping per-key order.

    Rows whose lease ran out (a worker died mid-delivery) are due again. On PostgreSQL the rows are
    locked with SKIP LOCKED, so replicas never lease the same row.
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


def mark_sent(session: Session, row_id: int, *, channel: str | None = None,
              ts: str | None = None, key: str | None = None) -> None:
    """Record a delivery; a keyed post remembers its `ts` so that updates edit it."""
    row = session.get_one(OutboxMessage, row_id)
    row.status = OutboxStatus.SENT
    row.delivered_at = utcnow()
    row.claimed_until = None
    row.last_error = None
    if key and channel and ts and session.get(SlackMessage, key) is None:
        session.add(SlackMessage(key=key, channel=channel, ts=ts))


def mark_retry(session: Session, row_id: int, at: datetime, error: str,
               note: str | None = None) -> None:
    row = session.get_one(OutboxMessage, row_id)
    if note:
        row.payload = {**row.payload, note: True}
    row.status = OutboxStatus.PENDING
    row.next_attempt_at = at
    row.claimed_until = None
    row.last_error = error


def release(session: Session, row_id: int, at: datetime) -> None:
    """Hand a leased row back untried, due again at `at`."""
    row = session.get_one(OutboxMessage, row_id)
    row.status = OutboxStatus.PENDING
    row.next_attempt_at = at
    row.claimed_until = None
    row.attempts -= 1


def mark_failed(session: Session, row_id: int, error: str) -> None:
    row = session.get_one(OutboxMessage, row_id)
    row.status = OutboxStatus.FAILED
    row.claimed_until = None
    row.last_error = error


def hold_method(session: Session, method: str, until: datetime) -> None:
    """Push every pending call of `method` to `until` (Slack rate-limits per method)."""
    session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.method == method,
            OutboxMessage.status == OutboxStatus.PENDING,
            OutboxMessage.next_attempt_at < until,
        )
        .values(next_attempt_at=until)
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
