"""Rituals: scheduled standups and retrospectives in the project channel, posted exactly once.

A schedule says when (`bot.services.ritual_times`); the `rituals` sweep finds the occurrences
that fell due since it last looked and claims each with a unique occurrence row (project, kind,
time), so with any number of replicas each one is posted once. An occurrence missed for longer
than the grace period is recorded as skipped instead of posted late. Halfway through the
answer window the people who have not answered a standup get a DM; at the end a summary is
posted in the thread.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from bot import outbox
from bot.errors import Conflict, InvalidInput, NotFound
from bot.models import (
    Decision,
    Gate,
    GateSignoff,
    Hypothesis,
    Incident,
    OccurrenceStatus,
    Project,
    Promotion,
    RetroItem,
    Risk,
    RiskAssessment,
    RiskStatus,
    RitualAway,
    RitualKind,
    RitualOccurrence,
    RitualSchedule,
    RitualSkip,
    RitualUpdate,
    SlackMessage,
    utcnow,
)
from bot.render import renderer
from bot.scheduler import sweep
from bot.services import access
from bot.services import roles as role_service
from bot.services.audit import record_event
from bot.services.promotions import promotions_between
from bot.services.records import lock
from bot.services.risks import default_timezone
from bot.services.ritual_times import (
    When,
    first_after,
    monday_of,
    next_occurrences,
    occurrences,
    parse_when,
    resolve_zone,
)

GRACE = timedelta(hours=1)
# Due schedules posted per transaction by the sweep (see `run_rituals`).
SCHEDULES_PER_TRANSACTION = 25
DEFAULT_WINDOW = timedelta(hours=3)
MIN_GAP = timedelta(hours=1)  # a ritual at most once an hour
TEXT_LIMIT = 3000
DEFAULT_RETRO_PERIOD = timedelta(days=14)  # the first retro's digest looks this far back
MISSED = "missed: Quorum was not running within an hour of the scheduled time"
HOLIDAY = "skipped for the day (/standup skip)"
ITEM_KINDS = ("went_well", "to_improve", "action")
NO_BLOCKER = re.compile(r"^(none|no|nope|n/?a|nothing|-|—)\.?$", re.I)
FIELD_LINE = re.compile(r"^\W*(yesterday|today|blockers?|blocked)\W*[:\-\u2013]\s*(.*)$", re.I)


# --- schedules -------------------------------------------------------------------------------


def zone_name(project: Project, default_tz: str | None = None) -> str:
    return project.timezone or default_tz or default_timezone()


def _schedule_of(session: Session, project: Project, kind: str) -> RitualSchedule | None:
    return session.scalars(select(RitualSchedule).where(
        RitualSchedule.project_id == project.id, RitualSchedule.kind == kind)).one_or_none()


def schedule_snapshot(schedule: RitualSchedule) -> dict[str, Any]:
    return {"kind": schedule.kind, "when": schedule.description, "cron": schedule.cron,
            "every_weeks": schedule.every_weeks, "timezone": schedule.timezone,
            "enabled": schedule.enabled,
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


def split_when(text: str) -> tuple[str, str | None]:
    """`weekdays 09:30 tz Europe/Paris` → (`weekdays 09:30`, `Europe/Paris`)."""
    match = re.match(r"^(.*?)\s+tz\s+(\S+)\s*$", text.strip(), re.I | re.S)
    if match:
        return match[1], match[2]
    return text, None


def check_schedule(project: Project, when_text: str, tz: str | None, now: datetime,
                   default_tz: str | None = None) -> tuple[When, str, date, list[datetime]]:
    """Read `<when>` and the time zone; InvalidInput unless the schedule fires in the future."""
    when = parse_when(when_text)
    zone = resolve_zone(tz) if tz else zone_name(project, default_tz)
    anchor = monday_of(now.astimezone(ZoneInfo(zone)).date())
    return when, zone, anchor, _check_fires(when, zone, anchor, now)


def set_schedule(session: Session, project: Project, actor: str, kind: str, when_text: str,
                 tz: str | None = None, *, members: Sequence[str] = (),
                 now: datetime | None = None, default_tz: str | None = None
                 ) -> tuple[RitualSchedule, list[datetime]]:
    """Create or replace the project's schedule of `kind`; returns it and its next three times."""
    now = now or utcnow()
    when, zone, anchor, nexts = check_schedule(project, when_text, tz, now, default_tz)
    schedule = _schedule_of(session, project, kind)
    before = schedule_snapshot(schedule) if schedule else None
    if schedule is None:
        schedule = RitualSchedule(team_id=project.team_id, project_id=project.id, kind=kind,
                                  created_by=actor, created_at=now,
                                  answer_window_minutes=int(DEFAULT_WINDOW.total_seconds() // 60))
        session.add(schedule)
    schedule.cron, schedule.every_weeks = when.cron, when.every_weeks
    schedule.description = when.description[:200]
    schedule.timezone, schedule.anchor_week = zone, anchor
    schedule.enabled = True
    schedule.checked_until = now  # a new or changed schedule looks forward only
    if members:
        schedule.members = list(dict.fromkeys(members))
    session.flush()
    record_event(session, actor=actor, action=f"{kind}.scheduled", entity=schedule,
                 project_id=project.id, before=before, after=schedule_snapshot(schedule))
    return schedule, nexts


def turn_off(session: Session, project: Project, actor: str, kind: str) -> RitualSchedule:
    schedule = _schedule_of(session, project, kind)
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
    schedule = _schedule_of(session, project, kind)
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
    schedule = _schedule_of(session, project, kind)
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


# --- occurrences -----------------------------------------------------------------------------


def card_key(occurrence: RitualOccurrence) -> str:
    return f"ritual:{occurrence.id}:card"


def occurrence_snapshot(occurrence: RitualOccurrence) -> dict[str, Any]:
    return {"kind": occurrence.kind, "scheduled_for": occurrence.scheduled_for.isoformat(),
            "local_date": occurrence.local_date.isoformat(), "status": occurrence.status,
            "skip_reason": occurrence.skip_reason}


def participants(session: Session, project: Project, schedule: RitualSchedule | None,
                 on: date) -> list[str]:
    """The project's role holders, or the channel's members when nobody holds a role; minus
    anyone away on `on`."""
    people = [user for users in role_service.holders(session, project).values()
              for user in users]
    if not people and schedule is not None:
        people = list(schedule.members or [])
    away = set(session.scalars(select(RitualAway.user_id).where(
        RitualAway.project_id == project.id, RitualAway.until >= on)))
    return [user for user in dict.fromkeys(people) if user not in away]


def _claim(session: Session, project: Project, kind: str, at: datetime, zone: str,
           schedule_id: int | None, actor: str, status: str = OccurrenceStatus.OPEN,
           skip_reason: str | None = None) -> RitualOccurrence | None:
    """Insert the occurrence row unless another process already did: the exactly-once claim."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    new_id = session.execute(
        insert(RitualOccurrence).values(
            team_id=project.team_id, project_id=project.id, schedule_id=schedule_id, kind=kind,
            scheduled_for=at, local_date=at.astimezone(ZoneInfo(zone)).date(), timezone=zone,
            status=status, skip_reason=skip_reason, participants=[], created_by=actor,
            created_at=utcnow(),
        ).on_conflict_do_nothing().returning(RitualOccurrence.id)
    ).scalar()
    return session.get(RitualOccurrence, new_id) if new_id is not None else None


def _post(session: Session, occurrence: RitualOccurrence, schedule: RitualSchedule | None,
          now: datetime, actor: str) -> None:
    """Post the standup or retro card and set its answer window."""
    project = occurrence.project
    window = timedelta(minutes=schedule.answer_window_minutes) if schedule else DEFAULT_WINDOW
    occurrence.participants = participants(session, project, schedule, occurrence.local_date)
    occurrence.posted_at = now
    occurrence.closes_at = now + window
    context: dict[str, Any] = {"o": occurrence, "project": project, "count": 0}
    if occurrence.kind == RitualKind.STANDUP:
        occurrence.remind_at = now + window / 2
    else:
        occurrence.period_start = previous_retro_time(session, occurrence) or \
            occurrence.scheduled_for - DEFAULT_RETRO_PERIOD
        context["digest"] = retro_digest(session, project, occurrence.period_start,
                                         occurrence.scheduled_for, occurrence.local_date)
    session.flush()
    outbox.post_message(session, project.team_id, project.channel_id,
                        renderer.message(f"ritual/{occurrence.kind}", **context),
                        key=card_key(occurrence))
    record_event(session, actor=actor, action=f"{occurrence.kind}.posted", entity=occurrence,
                 project_id=project.id, after=occurrence_snapshot(occurrence))


def run_now(session: Session, project: Project, actor: str, kind: str,
            now: datetime | None = None, default_tz: str | None = None) -> RitualOccurrence:
    """Hold the ritual right away (`/standup now`), whatever the schedule."""
    now = (now or utcnow()).replace(microsecond=0)
    schedule = _schedule_of(session, project, kind)
    zone = schedule.timezone if schedule else zone_name(project, default_tz)
    occurrence = _claim(session, project, kind, now, zone, schedule.id if schedule else None,
                        actor)
    if occurrence is None:
        raise Conflict(f"A {kind} was started in this channel this very second; see its thread.")
    _post(session, occurrence, schedule, now, actor)
    return occurrence


def _fire_due(session: Session, schedule: RitualSchedule, now: datetime) -> bool:
    """Post, or record as skipped, each occurrence of the schedule since it was last checked;
    True if any was due. Most ticks find nothing due, so that is worked out first, from the
    cached next fire time, before any query."""
    upcoming = first_after(schedule.cron, schedule.timezone, schedule.every_weeks,
                           schedule.anchor_week, schedule.checked_until)
    if upcoming is not None and upcoming > now:
        return False
    due = list(occurrences(schedule.cron, schedule.timezone, schedule.every_weeks,
                           schedule.anchor_week, schedule.checked_until, now))
    if not due:
        return False
    project = schedule.project
    skips = {day for day in session.scalars(select(RitualSkip.on_date).where(
        RitualSkip.project_id == project.id, RitualSkip.kind == schedule.kind))}
    for at in due:
        local_day = at.astimezone(ZoneInfo(schedule.timezone)).date()
        reason = MISSED if now - at > GRACE else HOLIDAY if local_day in skips else None
        occurrence = _claim(session, project, schedule.kind, at, schedule.timezone, schedule.id,
                            "scheduler", OccurrenceStatus.SKIPPED if reason else
                            OccurrenceStatus.OPEN, reason)
        if occurrence is None:
            continue  # another replica has it
        if reason:
            record_event(session, actor="scheduler", action=f"{schedule.kind}.skipped",
                         entity=occurrence, project_id=project.id,
                         after=occurrence_snapshot(occurrence))
        else:
            _post(session, occurrence, schedule, now, "scheduler")
    schedule.checked_until = max(schedule.checked_until, due[-1])
    return True


def _locked(session: Session, query: Any, model: Any) -> list[Any]:
    """Rows another replica is working on are skipped (PostgreSQL); SQLite runs writers alone.

    Only the model's own rows are locked (`of=`): its joined project is an outer join.
    """
    return list(session.scalars(query.with_for_update(skip_locked=True, of=model)))


@sweep("rituals")
def run_rituals(session: Session, now: datetime) -> bool:
    """Post due rituals, remind standup participants halfway, close and summarize.

    True when it stopped after `SCHEDULES_PER_TRANSACTION` due schedules: the scheduler commits
    and runs it again at once, so when hundreds fall due in the same minute the first cards go
    out while the rest are prepared, and no schedule stays locked for the whole fan-out.
    """
    fired = 0
    for schedule in _locked(session, select(RitualSchedule).where(RitualSchedule.enabled)
                            .order_by(RitualSchedule.id), RitualSchedule):
        if _fire_due(session, schedule, now):
            fired += 1
            if fired >= SCHEDULES_PER_TRANSACTION:
                return True
    for occurrence in _locked(session, select(RitualOccurrence).where(
            RitualOccurrence.status == OccurrenceStatus.OPEN,
            RitualOccurrence.reminded_at.is_(None),
            RitualOccurrence.remind_at <= now).order_by(RitualOccurrence.id), RitualOccurrence):
        _remind(session, occurrence, now)
    for occurrence in _locked(session, select(RitualOccurrence).where(
            RitualOccurrence.status == OccurrenceStatus.OPEN,
            RitualOccurrence.closes_at <= now).order_by(RitualOccurrence.id), RitualOccurrence):
        close(session, occurrence, now)
    return False


def answered(occurrence: RitualOccurrence) -> list[str]:
    return list(dict.fromkeys(update.user_id for update in occurrence.updates))


def _remind(session: Session, occurrence: RitualOccurrence, now: datetime) -> None:
    occurrence.reminded_at = now
    done = set(answered(occurrence))
    away = set(session.scalars(select(RitualAway.user_id).where(
        RitualAway.project_id == occurrence.project_id,
        RitualAway.until >= occurrence.local_date)))
    for user in occurrence.participants or []:
        if user in done or user in away or not access.visible_to_user(occurrence.project, user):
            continue  # a private channel's ritual reaches only its members (docs/access.md)
        # A DM: chat.postMessage to a user ID posts in the app's conversation with them.
        outbox.post_message(session, occurrence.team_id, user, renderer.message(
            "ritual/reminder", o=occurrence, project=occurrence.project, user=user))


def close(session: Session, occurrence: RitualOccurrence, now: datetime) -> None:
    """Close the answer window: the summary goes into the thread and the card says closed."""
    occurrence.status = OccurrenceStatus.CLOSED
    occurrence.closed_at = now
    session.flush()
    summary = Summary.of(occurrence)
    outbox.post_message(session, occurrence.team_id, occurrence.project.channel_id,
                        renderer.message(f"ritual/{occurrence.kind}_summary", o=occurrence,
                                         s=summary),
                        thread_key=card_key(occurrence))
    _refresh_card(session, occurrence)
    record_event(session, actor="scheduler", action=f"{occurrence.kind}.closed",
                 entity=occurrence, project_id=occurrence.project_id,
                 after={**occurrence_snapshot(occurrence), "updates": len(occurrence.updates),
                        "items": len(occurrence.items)})


def _refresh_card(session: Session, occurrence: RitualOccurrence) -> None:
    context: dict[str, Any] = {"o": occurrence, "project": occurrence.project,
                               "count": len(occurrence.updates if occurrence.kind ==
                                            RitualKind.STANDUP else occurrence.items)}
    if occurrence.kind == RitualKind.RETRO:
        context["digest"] = retro_digest(session, occurrence.project,
                                         occurrence.period_start or occurrence.scheduled_for,
                                         occurrence.scheduled_for, occurrence.local_date)
    outbox.update_message(session, occurrence.team_id, card_key(occurrence),
                          renderer.message(f"ritual/{occurrence.kind}", **context))


@dataclass
class Summary:
    """What the closing message of a standup or retro lists."""

    updates: list[RitualUpdate] = field(default_factory=list)
    blockers: list[tuple[str, str]] = field(default_factory=list)  # (user, blocker)
    missing: list[str] = field(default_factory=list)
    went_well: list[RetroItem] = field(default_factory=list)
    to_improve: list[RetroItem] = field(default_factory=list)
    actions: list[RetroItem] = field(default_factory=list)

    @classmethod
    def of(cls, occurrence: RitualOccurrence) -> Summary:
        done = set(answered(occurrence))
        blockers = [(u.user_id, u.blockers) for u in occurrence.updates if u.blockers]
        items = occurrence.items
        return cls(
            updates=list(occurrence.updates), blockers=blockers,
            missing=[user for user in occurrence.participants or [] if user not in done],
            went_well=[i for i in items if i.kind == "went_well"],
            to_improve=[i for i in items if i.kind == "to_improve"],
            actions=[i for i in items if i.kind == "action"],
        )


# --- standup updates -------------------------------------------------------------------------


def get_occurrence(session: Session, occurrence_id: int) -> RitualOccurrence:
    occurrence = session.get(RitualOccurrence, occurrence_id)
    if occurrence is None:
        raise NotFound("That ritual no longer exists.")
    return occurrence


def _clean(value: str | None, name: str) -> str:
    text = (value or "").strip()
    if len(text) > TEXT_LIMIT:
        raise InvalidInput(f"The {name} is {len(text)} characters long; keep it within "
                           f"{TEXT_LIMIT}.", field=name)
    return text


def ensure_open(occurrence: RitualOccurrence) -> None:
    if occurrence.status != OccurrenceStatus.OPEN:
        raise Conflict(f"This {occurrence.kind} of {occurrence.local_date.isoformat()} is "
                       f"closed; its summary is in the thread.")


def parse_reply(text: str) -> tuple[str, str, str]:
    """Yesterday, today and blockers from a thread reply; lines like `Blockers: …` are read,
    a reply without such lines counts as today's plan."""
    fields: dict[str, list[str]] = {"yesterday": [], "today": [], "blockers": []}
    current: str | None = None
    loose: list[str] = []
    for line in text.splitlines():
        match = FIELD_LINE.match(line)
        if match:
            word = match[1].lower()
            current = "blockers" if word.startswith("block") else word
            if match[2].strip():
                fields[current].append(match[2].strip())
        elif line.strip():
            (fields[current] if current else loose).append(line.strip())
    blockers = "\n".join(fields["blockers"])
    if NO_BLOCKER.match(blockers.strip()):
        blockers = ""
    today = "\n".join(fields["today"]) or ("\n".join(loose) if not any(fields.values()) else "")
    return "\n".join(fields["yesterday"]), today, blockers


def thread_occurrence(session: Session, channel: str, thread_ts: str) -> RitualOccurrence | None:
    """The ritual whose card is the parent of a thread, if any."""
    key = session.scalars(select(SlackMessage.key).where(
        SlackMessage.channel == channel, SlackMessage.ts == thread_ts,
        SlackMessage.key.like("ritual:%:card"))).first()
    if key is None:
        return None
    return session.get(RitualOccurrence, int(key.split(":")[1]))


def record_reply(session: Session, channel: str, thread_ts: str, user: str, text: str,
                 ts: str, event_id: str | None = None) -> RitualUpdate | None:
    """A reply in a standup thread is an update; the same message (a Slack retry) counts once.

    Returns None when the thread is no open standup or the message was stored already.
    """
    occurrence = thread_occurrence(session, channel, thread_ts)
    if occurrence is None or occurrence.kind != RitualKind.STANDUP or \
            occurrence.status != OccurrenceStatus.OPEN:
        return None
    text = text.strip()[:TEXT_LIMIT * 3]
    yesterday, today, blockers = parse_reply(text)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    new_id = session.execute(
        insert(RitualUpdate).values(
            occurrence_id=occurrence.id, user_id=user, source="thread", yesterday=yesterday,
            today=today, blockers=blockers, text=text, message_ts=ts, event_id=event_id,
            created_at=utcnow(), updated_at=utcnow(),
        ).on_conflict_do_nothing().returning(RitualUpdate.id)
    ).scalar()
    if new_id is None:
        return None
    update = session.get_one(RitualUpdate, new_id)
    session.refresh(occurrence, ["updates"])
    _audit_update(session, occurrence, update, user)
    _refresh_card(session, occurrence)
    return update


def _audit_update(session: Session, occurrence: RitualOccurrence, update: RitualUpdate,
                  actor: str) -> None:
    record_event(session, actor=actor, action="standup.update_added", entity=occurrence,
                 project_id=occurrence.project_id,
                 after={"user": update.user_id, "source": update.source,
                        "yesterday": update.yesterday, "today": update.today,
                        "blockers": update.blockers})


@dataclass
class UpdateDraft:
    yesterday: str = ""
    today: str = ""
    blockers: str = ""

    def validated(self) -> UpdateDraft:
        draft = UpdateDraft(_clean(self.yesterday, "yesterday"), _clean(self.today, "today"),
                            _clean(self.blockers, "blockers"))
        if not (draft.yesterday or draft.today or draft.blockers):
            raise InvalidInput("Say at least what you plan to do today.", field="today")
        if NO_BLOCKER.match(draft.blockers):
            draft.blockers = ""
        return draft


def add_update(session: Session, occurrence: RitualOccurrence, user: str,
               draft: UpdateDraft) -> RitualUpdate:
    """The "Add my update" modal: one per person and standup (submitting again edits it)."""
    draft = draft.validated()
    ensure_open(occurrence)
    key = f"modal:{user}"
    update = session.scalars(select(RitualUpdate).where(
        RitualUpdate.occurrence_id == occurrence.id, RitualUpdate.message_ts == key)
    ).one_or_none()
    if update is None:
        update = RitualUpdate(occurrence_id=occurrence.id, user_id=user, source="modal",
                              message_ts=key)
        session.add(update)
    update.yesterday, update.today, update.blockers = draft.yesterday, draft.today, \
        draft.blockers
    update.text = ""
    session.flush()
    session.refresh(occurrence, ["updates"])
    _audit_update(session, occurrence, update, user)
    outbox.post_message(session, occurrence.team_id, occurrence.project.channel_id,
                        renderer.message("ritual/update", u=update),
                        thread_key=card_key(occurrence))
    _refresh_card(session, occurrence)
    return update


# --- retrospectives --------------------------------------------------------------------------


@dataclass
class ItemDraft:
    kind: str
    text: str
    owner: str | None = None
    due_date: date | str | None = None

    def validated(self, today: date) -> ItemDraft:
        if self.kind not in ITEM_KINDS:
            raise InvalidInput(f"`{self.kind}` is not a retro item kind.", field="text")
        text = _clean(self.text, "text")
        if not text:
            raise InvalidInput("Write the item.", field="text")
        owner, due = self.owner or None, self.due_date or None
        if self.kind == "action":
            if not owner:
                raise InvalidInput("An action item needs an owner.", field="owner")
            if due is None:
                raise InvalidInput("An action item needs a due date.", field="due_date")
            if isinstance(due, str):
                try:
                    due = date.fromisoformat(due)
                except ValueError:
                    raise InvalidInput(f"`{due[:20]}` is not a date.", field="due_date") \
                        from None
            if due < today:
                raise InvalidInput(f"The due date {due.isoformat()} is in the past.",
                                   field="due_date")
        else:
            owner, due = None, None
        return ItemDraft(self.kind, text, owner, due)


def item_key(item: RetroItem) -> str:
    return f"retro_item:{item.id}"


def add_item(session: Session, occurrence: RitualOccurrence, user: str, draft: ItemDraft,
             now: datetime | None = None) -> RetroItem:
    """A Went well / To improve / Action item, stored and posted in the retro's thread."""
    now = now or utcnow()
    draft = draft.validated(now.astimezone(ZoneInfo(occurrence.timezone)).date())
    if occurrence.kind != RitualKind.RETRO:
        raise Conflict("Items belong to retrospectives, not standups.")
    ensure_open(occurrence)
    item = RetroItem(occurrence_id=occurrence.id, project_id=occurrence.project_id,
                     kind=draft.kind, text=draft.text, owner=draft.owner,
                     due_date=draft.due_date, state="open", created_by=user, created_at=now)
    session.add(item)
    session.flush()
    session.refresh(occurrence, ["items"])
    record_event(session, actor=user, action="retro.item_added", entity=occurrence,
                 project_id=occurrence.project_id, after=item_record(item))
    outbox.post_message(session, occurrence.team_id, occurrence.project.channel_id,
                        renderer.message("ritual/item", i=item),
                        thread_key=card_key(occurrence))
    _refresh_card(session, occurrence)
    return item


def complete_item(session: Session, item_id: int, user: str,
                  now: datetime | None = None) -> tuple[RetroItem, bool]:
    """Mark an action item done (its button in the retro thread): the item, and False when it
    already was (a double click, even at the same moment, changes nothing)."""
    item = session.get(RetroItem, item_id)
    if item is None or item.kind != "action":
        raise NotFound("That action item no longer exists.")
    if lock(session, item).state == "done":
        return item, False
    item.state, item.done_at = "done", now or utcnow()
    session.flush()
    record_event(session, actor=user, action="retro.action_done", entity=item.occurrence,
                 project_id=item.project_id, after=item_record(item))
    return item, True


def item_record(item: RetroItem) -> dict[str, Any]:
    return {"kind": item.kind, "text": item.text, "owner": item.owner,
            "due_date": item.due_date.isoformat() if item.due_date else None,
            "state": item.state, "created_by": item.created_by,
            "created_at": item.created_at.isoformat() if item.created_at else None}


def previous_retro_time(session: Session, occurrence: RitualOccurrence) -> datetime | None:
    return session.scalar(select(RitualOccurrence.scheduled_for).where(
        RitualOccurrence.project_id == occurrence.project_id,
        RitualOccurrence.kind == RitualKind.RETRO,
        RitualOccurrence.status != OccurrenceStatus.SKIPPED,
        RitualOccurrence.scheduled_for < occurrence.scheduled_for)
        .order_by(RitualOccurrence.scheduled_for.desc()).limit(1))


@dataclass
class Digest:
    """The retro's look back over the period since the previous retro."""

    since: datetime
    until: datetime
    decisions: list[Decision] = field(default_factory=list)
    hypotheses: list[Hypothesis] = field(default_factory=list)
    gates_passed: list[Gate] = field(default_factory=list)
    gates_changes: list[Gate] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    risks_created: list[Risk] = field(default_factory=list)
    risks_rescored: list[Risk] = field(default_factory=list)
    risks_overdue: list[Risk] = field(default_factory=list)
    actions: list[RetroItem] = field(default_factory=list)  # from earlier retros
    promotions: list[Any] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any((self.decisions, self.hypotheses, self.gates_passed, self.gates_changes,
                        self.incidents, self.risks_created, self.risks_rescored,
                        self.risks_overdue, self.actions, self.promotions))


def promotions_in(session: Session, project: Project, since: datetime,
                  until: datetime) -> list[Promotion]:
    """Model promotions announced in the period, for the retro digest."""
    return promotions_between(session, project, since, until)


def retro_digest(session: Session, project: Project, since: datetime, until: datetime,
                 today: date) -> Digest:
    """Decisions, hypotheses, gates, incidents, risks and earlier action items of the period."""
    digest = Digest(since=since, until=until)
    pid = project.id
    digest.decisions = list(session.scalars(select(Decision).where(
        Decision.project_id == pid, Decision.created_at > since, Decision.created_at <= until)
        .order_by(Decision.number)))
    digest.hypotheses = list(session.scalars(select(Hypothesis).where(
        Hypothesis.project_id == pid, Hypothesis.concluded_at > since,
        Hypothesis.concluded_at <= until).order_by(Hypothesis.number)))
    digest.gates_passed = list(session.scalars(select(Gate).where(
        Gate.project_id == pid, Gate.passed_at > since, Gate.passed_at <= until)
        .order_by(Gate.number)))
    digest.gates_changes = list(session.scalars(select(Gate).where(
        Gate.project_id == pid, Gate.id.in_(select(GateSignoff.gate_id).where(
            GateSignoff.decision == "changes", GateSignoff.at > since,
            GateSignoff.at <= until))).order_by(Gate.number)))
    digest.incidents = list(session.scalars(select(Incident).where(
        Incident.project_id == pid, Incident.started_at <= until,
        or_(Incident.started_at > since, Incident.resolved_at > since,
            Incident.resolved_at.is_(None))).order_by(Incident.number)))
    digest.risks_created = list(session.scalars(select(Risk).where(
        Risk.project_id == pid, Risk.created_at > since, Risk.created_at <= until)
        .order_by(Risk.number)))
    digest.risks_rescored = list(session.scalars(select(Risk).where(
        Risk.project_id == pid, Risk.created_at <= since,
        Risk.id.in_(select(RiskAssessment.risk_id).where(
            RiskAssessment.at > since, RiskAssessment.at <= until))).order_by(Risk.number)))
    digest.risks_overdue = list(session.scalars(select(Risk).where(
        Risk.project_id == pid, Risk.status != RiskStatus.CLOSED, Risk.next_review < today)
        .order_by(Risk.next_review, Risk.number)))
    digest.actions = list(session.scalars(select(RetroItem).where(
        RetroItem.project_id == pid, RetroItem.kind == "action",
        RetroItem.occurrence_id.in_(select(RitualOccurrence.id).where(
            RitualOccurrence.project_id == pid, RitualOccurrence.scheduled_for < until)),
        or_(RetroItem.state == "open", RetroItem.done_at > since))
        .order_by(RetroItem.id)))
    digest.promotions = promotions_in(session, project, since, until)
    return digest


# --- export ----------------------------------------------------------------------------------


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value else None


def export_records(session: Session) -> Iterator[dict[str, Any]]:
    """Schedules, then occurrences with their updates and retro items."""
    for schedule in session.scalars(select(RitualSchedule).order_by(RitualSchedule.id)):
        yield {
            "type": "schedule", "ref": schedule.ref, "project": schedule.project.name,
            "channel": schedule.project.channel_id,
            "status": "enabled" if schedule.enabled else "off",
            "created_at": _iso(schedule.created_at), "created_by": schedule.created_by,
            **schedule_snapshot(schedule),
            "anchor_week": _iso(schedule.anchor_week),
        }
    query = select(RitualOccurrence).options(
        selectinload(RitualOccurrence.updates), selectinload(RitualOccurrence.items)
    ).order_by(RitualOccurrence.id)
    for occurrence in session.scalars(query):
        yield {
            "type": "occurrence", "ref": occurrence.ref, "project": occurrence.project.name,
            "channel": occurrence.project.channel_id, "status": occurrence.status,
            "created_at": _iso(occurrence.created_at), "created_by": occurrence.created_by,
            "kind": occurrence.kind, "scheduled_for": _iso(occurrence.scheduled_for),
            "local_date": _iso(occurrence.local_date), "timezone": occurrence.timezone,
            "skip_reason": occurrence.skip_reason, "posted_at": _iso(occurrence.posted_at),
            "closed_at": _iso(occurrence.closed_at),
            "participants": list(occurrence.participants or []),
            "updates": [{"user": u.user_id, "source": u.source, "yesterday": u.yesterday,
                         "today": u.today, "blockers": u.blockers, "text": u.text,
                         "at": _iso(u.created_at)} for u in occurrence.updates],
            "items": [item_record(i) for i in occurrence.items],
        }
