"""Rituals: standup and retro schedules, occurrences, updates, items, skips and absences."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
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
    REVIEW = "review"  # a design review: agenda thread the day before, reminder, outcome
    DEMO = "demo"  # a sprint demo: the same shape as a review


class StandupMode(enum.StrEnum):
    CHANNEL = "channel"  # everyone at the schedule's time, in the channel's thread
    EACH = "each"  # each person by DM at the schedule's wall-clock time in their own zone


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
    # Custom standup questions ([{"key", "text", "required"}]); None: yesterday/today/blockers.
    questions: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    mode: Mapped[str] = mapped_column(String(16), default=StandupMode.CHANNEL)
    # Retros: how many votes each person may cast on the retro's items.
    votes_per_person: Mapped[int] = mapped_column(Integer, default=3)
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
    # The questions asked (a snapshot of the schedule's when it was posted; None: the default).
    questions: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    mode: Mapped[str] = mapped_column(String(16), default=StandupMode.CHANNEL)
    votes_per_person: Mapped[int] = mapped_column(Integer, default=3)
    # Reviews and demos: what came out of it, and the decisions logged from that outcome.
    outcome: Mapped[str | None] = mapped_column(Text)
    outcome_by: Mapped[str | None] = mapped_column(String(64))
    outcome_decisions: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(lazy="joined")
    prompts: Mapped[list[RitualPrompt]] = relationship(
        back_populates="occurrence", order_by="RitualPrompt.prompt_at")
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
    """One person's standup update, from thread replies, a DM or the "Add my update" modal.

    One per person and standup: `message_ts` is the first message's ts (or `modal:<user>`), and
    `parts` holds the text of every message of theirs that makes it up, by ts, so a later reply
    extends the update and an edit (`message_changed`) replaces its part.
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
    # Answers to the occurrence's questions by question key (the default ones mirror the
    # yesterday/today/blockers columns).
    answers: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    parts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    message_ts: Mapped[str | None] = mapped_column(String(32))
    event_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    occurrence: Mapped[RitualOccurrence] = relationship(back_populates="updates")


class RetroItem(Base):
    """A retrospective item (went well, to improve, or an action item `A-n` with owner and due
    date) or a review's agenda item. An anonymous item stores no author (`created_by` is
    `anonymous`)."""

    __tablename__ = "retro_items"
    __table_args__ = (Index("ix_retro_items_owner", "owner", "state"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Action items are numbered per workspace (`A-3`, `/retro done A-3`).
    number: Mapped[int | None] = mapped_column(Integer)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    occurrence_id: Mapped[int] = mapped_column(ForeignKey("ritual_occurrences.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # went_well | to_improve | action | agenda
    text: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(64))
    due_date: Mapped[date | None] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), default="open")  # action items: open | done
    done_at: Mapped[datetime | None]
    done_by: Mapped[str | None] = mapped_column(String(64))
    overdue_notified_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    occurrence: Mapped[RitualOccurrence] = relationship(back_populates="items")
    votes: Mapped[list[RetroVote]] = relationship(back_populates="item", order_by="RetroVote.id")

    @property
    def ref(self) -> str:
        return f"A-{self.number}" if self.number else f"ITEM-{self.id}"


class RetroVote(Base):
    """One person's vote on a retro item (at most one per item; N per retro)."""

    __tablename__ = "retro_votes"
    __table_args__ = (UniqueConstraint("item_id", "user_id"),
                      Index("ix_retro_votes_occurrence_user", "occurrence_id", "user_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("retro_items.id"))
    occurrence_id: Mapped[int] = mapped_column(ForeignKey("ritual_occurrences.id"))
    user_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    item: Mapped[RetroItem] = relationship(back_populates="votes")


class RitualPrompt(Base):
    """A standup in `each` mode asks every participant at the schedule's time in their zone."""

    __tablename__ = "ritual_prompts"
    __table_args__ = (UniqueConstraint("occurrence_id", "user_id"),
                      Index("ix_ritual_prompts_due", "sent_at", "prompt_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurrence_id: Mapped[int] = mapped_column(ForeignKey("ritual_occurrences.id"))
    user_id: Mapped[str] = mapped_column(String(64))
    timezone: Mapped[str] = mapped_column(String(64))
    prompt_at: Mapped[datetime]
    closes_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    occurrence: Mapped[RitualOccurrence] = relationship(back_populates="prompts")


class SlackUserZone(Base):
    """A person's time zone as `users.info` gave it (`tz`), cached for a day."""

    __tablename__ = "slack_user_zones"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64))
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


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
