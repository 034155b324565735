"""The registers as SQLAlchemy 2 typed models, plus the runtime tables (outbox, Slack messages)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only aliases INTEGER PRIMARY KEY to the rowid (autoincrement) for plain INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType}


class Project(Base):
    """A channel's project, created the first time a command is used there."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("team_id", "channel_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RefCounter(Base):
    """The last number handed out for each short-reference prefix (D, H, G, …) in a workspace."""

    __tablename__ = "ref_counters"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(8), primary_key=True)
    last_value: Mapped[int] = mapped_column(Integer, default=0)


class Referenced:
    """Mixin of records with a per-workspace short reference such as `D-12`."""

    ref_prefix: ClassVar[str]
    team_id: Mapped[str]
    number: Mapped[int]

    @property
    def ref(self) -> str:
        return f"{self.ref_prefix}-{self.number}"


class AuditEvent(Base):
    """One change to one register. Append-only: the database refuses updates and deletes."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_entity", "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), index=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    entity_ref: Mapped[str] = mapped_column(String(32))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]


class DecisionStatus(enum.StrEnum):
    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"


class Decision(Referenced, Base):
    """An architecture/model decision record in the ADR/MADR shape."""

    __tablename__ = "decisions"
    __table_args__ = (UniqueConstraint("team_id", "number"),)
    ref_prefix = "D"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(Integer)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    title: Mapped[str] = mapped_column(String(150))
    context: Mapped[str] = mapped_column(Text, default="")
    options: Mapped[str] = mapped_column(Text, default="")
    decision: Mapped[str] = mapped_column(Text, default="")
    consequences: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=DecisionStatus.PROPOSED)
    deciders: Mapped[list[str]] = mapped_column(JSONType, default=list)
    source_permalink: Mapped[str | None] = mapped_column(String(500))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(lazy="joined")
    supersedes: Mapped[Decision | None] = relationship(
        remote_side=[id], back_populates="superseded_by", foreign_keys=[supersedes_id]
    )
    superseded_by: Mapped[Decision | None] = relationship(
        back_populates="supersedes", foreign_keys=[supersedes_id], uselist=False
    )


class IncidentStatus(enum.StrEnum):
    DECLARED = "declared"
    ACKNOWLEDGED = "acknowledged"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"


class Incident(Referenced, Base):
    """A production incident `INC-n`, declared in Slack, by the CLI or by Alertmanager."""

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("team_id", "number"),
        # One open incident per Alertmanager group: a group that fires again after its incident
        # was resolved opens a new one, and concurrent notifications of a new group make one.
        Index("uq_incidents_open_alert_group", "team_id", "alert_group_key", unique=True,
              sqlite_where=text("status <> 'resolved'"),
              postgresql_where=text("status <> 'resolved'")),
        Index("ix_incidents_alert_group", "alert_group_key"),
    )
    ref_prefix = "INC"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(Integer)
    # None while unrouted: an alert that named no known project and found no default channel.
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), index=True)
    title: Mapped[str] = mapped_column(String(150))
    severity: Mapped[str] = mapped_column(String(8), default="sev3")
    status: Mapped[str] = mapped_column(String(16), default=IncidentStatus.DECLARED)
    commander: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    channel_id: Mapped[str | None] = mapped_column(String(32))  # the dedicated channel
    source: Mapped[str] = mapped_column(String(16), default="slack")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    mitigated_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    # The last status update by a person (or the declaration): update reminders count from it.
    last_update_at: Mapped[datetime] = mapped_column(default=utcnow)
    summary: Mapped[str] = mapped_column(Text, default="")
    root_cause: Mapped[str] = mapped_column(Text, default="")
    follow_ups: Mapped[str] = mapped_column(Text, default="")
    alert_group_key: Mapped[str | None] = mapped_column(String(1000))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    project: Mapped[Project | None] = relationship(lazy="joined")
    # Chronological: an alert's entry carries the time Alertmanager says it started firing.
    events: Mapped[list[IncidentEvent]] = relationship(
        back_populates="incident", order_by="(IncidentEvent.at, IncidentEvent.id)",
        cascade="all, delete-orphan",
    )


class IncidentEvent(Base):
    """One entry of an incident's timeline: who did or said what, when."""

    __tablename__ = "incident_events"
    __table_args__ = (
        # A repeated Alertmanager notification can never add the same alert twice.
        UniqueConstraint("incident_id", "kind", "alert_fingerprint"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    alert_fingerprint: Mapped[str | None] = mapped_column(String(64))

    incident: Mapped[Incident] = relationship(back_populates="events")


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


class SlackMessage(Base):
    """Where a keyed message (a record's card) lives in Slack, so later changes edit it."""

    __tablename__ = "slack_messages"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
