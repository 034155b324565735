"""Rituals: standup and retro schedules, occurrences, updates, items, skips and absences."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.models.core import Base, BigId, JSONType, utcnow

if TYPE_CHECKING:
    from bot.models.core import Project


class RitualKind(enum.StrEnum):
    STANDUP = "standup"
    RETRO = "retro"


class OccurrenceStatus(enum.StrEnum):
    OPEN = "open"  # posted, collecting updates or retro items
    CLOSED = "closed"  # the summary is posted
    SKIPPED = "skipped"  # not posted: a holiday, or missed beyond the grace period


class RitualSchedule(Base):
    """When a project's standup or retrospective is posted: one schedule per project and kind."""

    __tablename__ = "ritual_schedules"
    __table_args__ = (UniqueConstraint("project_id", "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    kind: Mapped[str] = mapped_column(String(16))
    # A five-field cron expression with day names (`30 9 * * mon-fri`), read in `timezone`.
    cron: Mapped[str] = mapped_column(String(120))
    # Fire only every n-th week, counted from the ISO week of `anchor_week` (a Monday).
    every_weeks: Mapped[int] = mapped_column(Integer, default=1)
    anchor_week: Mapped[date] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    answer_window_minutes: Mapped[int] = mapped_column(Integer, default=180)
    # The text people typed (`weekdays 09:30`), shown back to them.
    description: Mapped[str] = mapped_column(String(200))
    # Channel members when the schedule was set: participants when nobody holds a role.
    members: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Every occurrence up to this instant has been looked at (posted, skipped or found missed).
    checked_until: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(lazy="joined")

    @property
    def ref(self) -> str:
        return f"{self.kind.upper()}-SCHEDULE-{self.id}"


class RitualOccurrence(Base):
    """One standup or retrospective. The unique (project, kind, time) row is the claim that makes
    it happen exactly once, whatever the number of replicas."""

    __tablename__ = "ritual_occurrences"
    __table_args__ = (
        UniqueConstraint("project_id", "kind", "scheduled_for"),
        Index("ix_ritual_occurrences_status", "status", "closes_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("ritual_schedules.id"))
    kind: Mapped[str] = mapped_column(String(16))
    scheduled_for: Mapped[datetime]
    local_date: Mapped[date] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=OccurrenceStatus.OPEN)
    skip_reason: Mapped[str | None] = mapped_column(String(200))
    participants: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # What the retro digest covered: from the previous retro to this one.
    period_start: Mapped[datetime | None]
    posted_at: Mapped[datetime | None]
    remind_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    closes_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(lazy="joined")
    updates: Mapped[list[RitualUpdate]] = relationship(
        back_populates="occurrence", order_by="RitualUpdate.id")
    items: Mapped[list[RetroItem]] = relationship(
        back_populates="occurrence", order_by="RetroItem.id")

    @property
    def ref(self) -> str:
        return f"{self.kind.upper()}-{self.id}"

    def local(self, moment: datetime | None) -> datetime | None:
        """`moment` on the wall clock of the occurrence's time zone (for templates)."""
        return moment.astimezone(ZoneInfo(self.timezone)) if moment else None


class RitualUpdate(Base):
    """One person's standup update, from a thread reply or the "Add my update" modal.

    A thread reply is unique by its message ts, so a retried Slack event stores it once.
    """

    __tablename__ = "ritual_updates"
    __table_args__ = (UniqueConstraint("occurrence_id", "message_ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurrence_id: Mapped[int] = mapped_column(ForeignKey("ritual_occurrences.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # thread | modal
    yesterday: Mapped[str] = mapped_column(Text, default="")
    today: Mapped[str] = mapped_column(Text, default="")
    blockers: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    message_ts: Mapped[str | None] = mapped_column(String(32))
    event_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    occurrence: Mapped[RitualOccurrence] = relationship(back_populates="updates")


class RetroItem(Base):
    """A retrospective item: went well, to improve, or an action item with owner and due date."""

    __tablename__ = "retro_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurrence_id: Mapped[int] = mapped_column(ForeignKey("ritual_occurrences.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # went_well | to_improve | action
    text: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(64))
    due_date: Mapped[date | None] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), default="open")  # action items: open | done
    done_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    occurrence: Mapped[RitualOccurrence] = relationship(back_populates="items")


class RitualSkip(Base):
    """A local date on which a project's ritual is not held (`/standup skip <date>`)."""

    __tablename__ = "ritual_skips"
    __table_args__ = (UniqueConstraint("project_id", "kind", "on_date"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    kind: Mapped[str] = mapped_column(String(16))
    on_date: Mapped[date] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RitualAway(Base):
    """Someone out of office until a date (inclusive): not expected at the project's standups."""

    __tablename__ = "ritual_away"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    user_id: Mapped[str] = mapped_column(String(64))
    until: Mapped[date] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
