"""Incidents and their timelines."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    Date,
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
    # Free-text follow-ups of incidents resolved before they became items (`follow_up_items`).
    follow_ups: Mapped[str] = mapped_column(Text, default="")
    impact: Mapped[str] = mapped_column(Text, default="")
    # Where an alert incident came from: the alert's `generatorURL`, `runbook_url` and
    # `dashboard`/`dashboard_url` annotations (validated http(s) links only).
    source_url: Mapped[str | None] = mapped_column(String(2000))
    runbook_url: Mapped[str | None] = mapped_column(String(2000))
    dashboard_url: Mapped[str | None] = mapped_column(String(2000))
    # The labels every alert of the group shares: the matchers of a silence made from Slack.
    alert_labels: Mapped[dict[str, Any] | None]
    # Whether its card offers silences (an Alertmanager API was configured when it opened).
    silenceable: Mapped[bool] = mapped_column(Boolean, default=False)
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
    follow_up_items: Mapped[list[IncidentFollowUp]] = relationship(
        back_populates="incident", order_by="IncidentFollowUp.position",
        cascade="all, delete-orphan",
    )
    silences: Mapped[list[IncidentSilence]] = relationship(
        back_populates="incident", order_by="IncidentSilence.id", cascade="all, delete-orphan",
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


class FollowUpStatus(enum.StrEnum):
    OPEN = "open"
    DONE = "done"


class IncidentFollowUp(Base):
    """A follow-up of an incident: what to do, who does it, by when, and its tracker issue."""

    __tablename__ = "incident_follow_ups"
    __table_args__ = (
        UniqueConstraint("incident_id", "position"),
        Index("ix_incident_follow_ups_owner", "team_id", "owner", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    team_id: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer)  # 1, 2, 3… within the incident
    text: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(64))
    due_date: Mapped[date | None] = mapped_column(Date)
    url: Mapped[str | None] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16), default=FollowUpStatus.OPEN)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]
    done_by: Mapped[str | None] = mapped_column(String(64))
    # When its owner was told it is overdue (once): the sweep skips it from then on.
    overdue_notified_at: Mapped[datetime | None]

    incident: Mapped[Incident] = relationship(back_populates="follow_up_items")

    @property
    def ref(self) -> str:
        return f"{self.incident.ref}/{self.position}"


class IncidentSilence(Base):
    """A silence made in Alertmanager from the incident's card; expired when it resolves."""

    __tablename__ = "incident_silences"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    silence_id: Mapped[str] = mapped_column(String(64))
    matchers: Mapped[dict[str, Any]]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    until_resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set once Alertmanager confirmed the expiry (or the silence had already ended there).
    expired_at: Mapped[datetime | None]

    incident: Mapped[Incident] = relationship(back_populates="silences")
