"""Incidents and their timelines."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.models.core import Base, BigId, Referenced, utcnow

if TYPE_CHECKING:
    from bot.models.core import Project


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
