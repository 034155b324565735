"""Runtime tables: the outbox, job claims, pacing, processed requests, Slack messages, Home tabs."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.models.core import Base, BigId, utcnow


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPERSEDED = "superseded"


class OutboxMessage(Base):
    """A Slack Web API call to make, written in the same transaction as the change behind it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_key", "message_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    # Calls that share a key are delivered in order; `chat.update` finds its `ts` through it.
    message_key: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class JobClaim(Base):
    """A unit of scheduled work that one process has taken on (see `bot.scheduler`)."""

    __tablename__ = "job_claims"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)


class PostPace(Base):
    """When a workspace's next `chat.postMessage` may go out (`bot.pacing`): one row per team,
    shared by every replica so that together they keep to Slack's workspace-wide rate."""

    __tablename__ = "post_pace"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Seconds since the epoch (a plain number, so both databases add and compare it alike).
    next_slot: Mapped[float] = mapped_column(Float)


class ProcessedRequest(Base):
    """A Slack event or modal submission already acted on, remembered in the same transaction as
    its effect: Slack's retry of the event (same `event_id`) or a second press of Submit (same
    view id) then changes nothing, while a retry of an attempt that failed still goes through.
    Swept once no retry can come any more (`bot.services.idempotency`)."""

    __tablename__ = "processed_requests"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class SlackMessage(Base):
    """Where a keyed message (a record's card) lives in Slack, so later changes edit it."""

    __tablename__ = "slack_messages"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class HomeTab(Base):
    """A person who has opened Quorum's App Home, and the project they filter it to.

    Only people with a row get their Home re-published after changes (the others see a fresh
    one when they first open it); `project_id` None shows every project of theirs.
    """

    __tablename__ = "home_tabs"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
