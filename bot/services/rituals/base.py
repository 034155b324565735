"""What every ritual module shares: constants, the occurrence's card key, lookups, checks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.errors import Conflict, InvalidInput, NotFound
from bot.models import OccurrenceStatus, Project, RitualOccurrence, RitualSchedule
from bot.services.risks import default_timezone

GRACE = timedelta(hours=1)
DEFAULT_WINDOW = timedelta(hours=3)
MIN_GAP = timedelta(hours=1)  # a ritual at most once an hour
TEXT_LIMIT = 3000
DEFAULT_RETRO_PERIOD = timedelta(days=14)  # the first retro's digest looks this far back
MISSED = "missed: Quorum was not running within an hour of the scheduled time"
HOLIDAY = "skipped for the day (/standup skip)"
# Reviews and demos: the agenda thread opens this long before the meeting.
AGENDA_LEAD = timedelta(days=1)
MEETING_LENGTH = timedelta(hours=1)


def zone_name(project: Project, default_tz: str | None = None) -> str:
    return project.timezone or default_tz or default_timezone()


def schedule_of(session: Session, project: Project, kind: str) -> RitualSchedule | None:
    return session.scalars(select(RitualSchedule).where(
        RitualSchedule.project_id == project.id, RitualSchedule.kind == kind)).one_or_none()


def card_key(occurrence: RitualOccurrence) -> str:
    return f"ritual:{occurrence.id}:card"


def occurrence_snapshot(occurrence: RitualOccurrence) -> dict[str, Any]:
    return {"kind": occurrence.kind, "scheduled_for": occurrence.scheduled_for.isoformat(),
            "local_date": occurrence.local_date.isoformat(), "status": occurrence.status,
            "skip_reason": occurrence.skip_reason}


def get_occurrence(session: Session, occurrence_id: int) -> RitualOccurrence:
    occurrence = session.get(RitualOccurrence, occurrence_id)
    if occurrence is None:
        raise NotFound("That ritual no longer exists.")
    return occurrence


def ensure_open(occurrence: RitualOccurrence) -> None:
    if occurrence.status != OccurrenceStatus.OPEN:
        raise Conflict(f"This {occurrence.kind} of {occurrence.local_date.isoformat()} is "
                       f"closed; its summary is in the thread.")


def clean(value: str | None, name: str) -> str:
    text = (value or "").strip()
    if len(text) > TEXT_LIMIT:
        raise InvalidInput(f"The {name} is {len(text)} characters long; keep it within "
                           f"{TEXT_LIMIT}.", field=name)
    return text


def insert_for(session: Session) -> Any:
    """The dialect's INSERT with ON CONFLICT (both PostgreSQL and SQLite have it)."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
