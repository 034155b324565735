"""Ritual schedules: when each kind is held in a project, skipped days, people away."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.errors import Conflict, InvalidInput, NotFound
from bot.models import (
    Project,
    RitualAway,
    RitualKind,
    RitualOccurrence,
    RitualSchedule,
    RitualSkip,
    StandupMode,
    utcnow,
)
from bot.services import roles as role_service
from bot.services.audit import record_event
from bot.services.ritual_times import When, monday_of, next_occurrences, parse_when, resolve_zone
from bot.services.rituals.base import DEFAULT_WINDOW, MIN_GAP, schedule_of, zone_name

MAX_VOTES = 20
# Reviews and demos: the outcome is asked for this long after the start.
MEETING_WINDOW = timedelta(hours=1)


def schedule_snapshot(schedule: RitualSchedule) -> dict[str, Any]:
    return {"kind": schedule.kind, "when": schedule.description, "cron": schedule.cron,
            "every_weeks": schedule.every_weeks, "timezone": schedule.timezone,
            "enabled": schedule.enabled, "mode": schedule.mode,
            "questions": schedule.questions, "votes_per_person": schedule.votes_per_person,
            "answer_window_minutes": schedule.answer_window_minutes}


def upcoming(schedule: RitualSchedule, now: datetime, count: int = 3) -> list[datetime]:
    return next_occurrences(schedule.cron, schedule.timezone, schedule.every_weeks,
                            schedule.anchor_week, now, count)


def _check_fires(when: When, zone: str, anchor: date, now: datetime) -> list[datetime]:
    nexts = next_occurrences(when.cron, zone, when.every_weeks, anchor, now, 3)
    if not nexts:
        raise InvalidInput(f"`{when.description}` never happens (no such date in the next two "
                           f"years), so nothing would ever be posted.", field="when")
    if any(b - a < MIN_GAP for a, b in pairwise(nexts)):
        raise InvalidInput(f"`{when.description}` fires more than once an hour; a ritual can "
                           f"be at most hourly.", field="when")
    return nexts


@dataclass(frozen=True)
class WhenText:
    """`<when>` as typed, split into the time words, the zone and the options after them."""

    when: str
    tz: str | None = None
    each: bool = False
    votes: int | None = None


def split_when(text: str) -> WhenText:
    """`weekdays 09:30 tz Europe/Paris each` → when `weekdays 09:30`, tz, each person's zone;
    `votes N` (retros) sets each person's votes."""
    rest = text.strip()
    tz: str | None = None
    each = False
    votes: int | None = None
    while True:
        if match := re.match(r"^(.*?)\s+each\s*$", rest, re.I | re.S):
            rest, each = match[1], True
        elif match := re.match(r"^(.*?)\s+tz\s+(\S+)\s*$", rest, re.I | re.S):
            rest, tz = match[1], match[2]
        elif match := re.match(r"^(.*?)\s+votes?\s+(\d{1,3})\s*$", rest, re.I | re.S):
            rest, votes = match[1], int(match[2])
        else:
            return WhenText(rest, tz, each, votes)


def check_schedule(project: Project, when_text: str, tz: str | None, now: datetime,
                   default_tz: str | None = None) -> tuple[When, str, date, list[datetime]]:
    """Read `<when>` and the time zone; InvalidInput unless the schedule fires in the future."""
    when = parse_when(when_text)
    zone = resolve_zone(tz) if tz else zone_name(project, default_tz)
    anchor = monday_of(now.astimezone(ZoneInfo(zone)).date())
    return when, zone, anchor, _check_fires(when, zone, anchor, now)


def check_options(kind: str, each: bool, votes: int | None) -> None:
    if each and kind != RitualKind.STANDUP:
        raise InvalidInput("`each` (each person at their own time) is for standups only.",
                           field="when")
    if votes is not None:
        if kind != RitualKind.RETRO:
            raise InvalidInput("`votes N` is for retrospectives only.", field="when")
        if not 1 <= votes <= MAX_VOTES:
            raise InvalidInput(f"Give each person 1 to {MAX_VOTES} votes, not {votes}.",
                               field="when")


def set_schedule(session: Session, project: Project, actor: str, kind: str, when_text: str,
                 tz: str | None = None, *, members: Sequence[str] = (),
                 now: datetime | None = None, default_tz: str | None = None,
                 each: bool = False, votes: int | None = None,
                 ) -> tuple[RitualSchedule, list[datetime]]:
    """Create or replace the project's schedule of `kind`; returns it and its next three times."""
    now = now or utcnow()
    check_options(kind, each, votes)
    when, zone, anchor, nexts = check_schedule(project, when_text, tz, now, default_tz)
    schedule = schedule_of(session, project, kind)
    before = schedule_snapshot(schedule) if schedule else None
    if schedule is None:
        window = MEETING_WINDOW if kind in (RitualKind.REVIEW, RitualKind.DEMO) else \
            DEFAULT_WINDOW
        schedule = RitualSchedule(team_id=project.team_id, project_id=project.id, kind=kind,
                                  created_by=actor, created_at=now, votes_per_person=3,
                                  answer_window_minutes=int(window.total_seconds() // 60))
        session.add(schedule)
    schedule.cron, schedule.every_weeks = when.cron, when.every_weeks
    schedule.description = when.description[:200]
    schedule.timezone, schedule.anchor_week = zone, anchor
    schedule.enabled = True
    schedule.mode = StandupMode.EACH if each else StandupMode.CHANNEL
    if votes is not None:
        schedule.votes_per_person = votes
    schedule.checked_until = now  # a new or changed schedule looks forward only
    if members:
        schedule.members = list(dict.fromkeys(members))
    session.flush()
    record_event(session, actor=actor, action=f"{kind}.scheduled", entity=schedule,
                 project_id=project.id, before=before, after=schedule_snapshot(schedule))
    return schedule, nexts


def turn_off(session: Session, project: Project, actor: str, kind: str) -> RitualSchedule:
    schedule = schedule_of(session, project, kind)
    if schedule is None or not schedule.enabled:
        raise NotFound(f"There is no {kind} scheduled in this channel, so there is nothing to "
                       f"turn off.")
    before = schedule_snapshot(schedule)
    schedule.enabled = False
    session.flush()
    record_event(session, actor=actor, action=f"{kind}.unscheduled", entity=schedule,
                 project_id=project.id, before=before, after=schedule_snapshot(schedule))
    return schedule


@dataclass(frozen=True)
class Status:
    kind: str
    schedule: RitualSchedule | None
    upcoming: list[datetime]
    skips: list[date]
    away: list[RitualAway]
    last: RitualOccurrence | None


def status(session: Session, project: Project, kind: str, now: datetime | None = None,
           default_tz: str | None = None) -> Status:
    now = now or utcnow()
    schedule = schedule_of(session, project, kind)
    nexts = upcoming(schedule, now) if schedule and schedule.enabled else []
    today = now.astimezone(ZoneInfo(schedule.timezone if schedule else
                                    zone_name(project, default_tz))).date()
    skips = list(session.scalars(select(RitualSkip.on_date).where(
        RitualSkip.project_id == project.id, RitualSkip.kind == kind,
        RitualSkip.on_date >= today).order_by(RitualSkip.on_date)))
    away = list(session.scalars(select(RitualAway).where(
        RitualAway.project_id == project.id, RitualAway.until >= today)
        .order_by(RitualAway.until)))
    last = session.scalars(select(RitualOccurrence).where(
        RitualOccurrence.project_id == project.id, RitualOccurrence.kind == kind)
        .order_by(RitualOccurrence.scheduled_for.desc()).limit(1)).one_or_none()
    return Status(kind, schedule, nexts, skips, away, last)


def _local_today(project: Project, kind: str, session: Session, now: datetime,
                 default_tz: str | None) -> date:
    schedule = schedule_of(session, project, kind)
    zone = schedule.timezone if schedule else zone_name(project, default_tz)
    return now.astimezone(ZoneInfo(zone)).date()


def skip_date(session: Session, project: Project, actor: str, kind: str, on: date, *,
              now: datetime | None = None, default_tz: str | None = None) -> RitualSkip:
    """Do not hold the ritual on `on` (a holiday); the date must be today or later."""
    now = now or utcnow()
    today = _local_today(project, kind, session, now, default_tz)
    if on < today:
        raise InvalidInput(f"{on.isoformat()} is in the past; give today or a later date.",
                           field="date")
    exists = session.scalars(select(RitualSkip).where(
        RitualSkip.project_id == project.id, RitualSkip.kind == kind,
        RitualSkip.on_date == on)).one_or_none()
    if exists is not None:
        raise Conflict(f"The {kind} of {on.isoformat()} is already skipped.")
    skip = RitualSkip(project_id=project.id, kind=kind, on_date=on, created_by=actor,
                      created_at=now)
    session.add(skip)
    session.flush()
    record_event(session, actor=actor, action=f"{kind}.skip_added", entity=project,
                 project_id=project.id, after={"date": on.isoformat()})
    return skip


def set_away(session: Session, project: Project, actor: str, user_id: str, until: date, *,
             now: datetime | None = None, default_tz: str | None = None) -> RitualAway:
    """`user_id` is out of office until `until` (inclusive): not expected at standups."""
    now = now or utcnow()
    today = _local_today(project, RitualKind.STANDUP, session, now, default_tz)
    if until < today:
        raise InvalidInput(f"{until.isoformat()} is in the past; give the last day they are "
                           f"away (today or later).", field="date")
    away = session.scalars(select(RitualAway).where(
        RitualAway.project_id == project.id, RitualAway.user_id == user_id)).one_or_none()
    before = {"user": user_id, "until": away.until.isoformat()} if away else None
    if away is None:
        away = RitualAway(project_id=project.id, user_id=user_id, until=until,
                          created_by=actor, created_at=now)
        session.add(away)
    away.until = until
    session.flush()
    record_event(session, actor=actor, action="standup.away_set", entity=project,
                 project_id=project.id, before=before,
                 after={"user": user_id, "until": until.isoformat()})
    return away


def away_on(session: Session, project_id: int, on: date) -> list[str]:
    return list(session.scalars(select(RitualAway.user_id).where(
        RitualAway.project_id == project_id, RitualAway.until >= on)
        .order_by(RitualAway.user_id)))


def people(session: Session, project: Project, schedule: RitualSchedule | None) -> list[str]:
    """The project's role holders, or the channel's members when nobody holds a role."""
    found = [user for users in role_service.holders(session, project).values()
             for user in users]
    if not found and schedule is not None:
        found = list(schedule.members or [])
    return list(dict.fromkeys(found))


def participants(session: Session, project: Project, schedule: RitualSchedule | None,
                 on: date) -> list[str]:
    """Who is expected on `on`: `people` minus anyone away that day."""
    away = set(session.scalars(select(RitualAway.user_id).where(
        RitualAway.project_id == project.id, RitualAway.until >= on)))
    return [user for user in people(session, project, schedule) if user not in away]
