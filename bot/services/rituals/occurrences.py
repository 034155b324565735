"""Ritual occurrences: the sweep that posts each one exactly once, reminds, and closes it.

A schedule says when (`bot.services.ritual_times`); the `rituals` sweep finds the occurrences
that fell due since it last looked and claims each with a unique occurrence row (project, kind,
time), so with any number of replicas each one is posted once. An occurrence missed for longer
than the grace period is recorded as skipped instead of posted late. Standups remind who has
not answered halfway through the window and post a summary at its end; retros post theirs at
the end; reviews and demos open their agenda thread a day ahead, remind at the start and ask
for the outcome afterwards. A standup in `each` mode is claimed a day ahead and asks each
person at the schedule's time in their own zone (`bot.services.rituals.zones`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import outbox
from bot.errors import Conflict
from bot.models import (
    OccurrenceStatus,
    Project,
    RitualKind,
    RitualOccurrence,
    RitualSchedule,
    RitualSkip,
    StandupMode,
    utcnow,
)
from bot.render import renderer
from bot.scheduler import sweep
from bot.services.audit import record_event
from bot.services.ritual_times import first_after, occurrences
from bot.services.rituals import retros, reviews, standups, zones
from bot.services.rituals.base import (
    AGENDA_LEAD,
    DEFAULT_RETRO_PERIOD,
    DEFAULT_WINDOW,
    GRACE,
    HOLIDAY,
    MISSED,
    card_key,
    insert_for,
    occurrence_snapshot,
    schedule_of,
    zone_name,
)
from bot.services.rituals.schedules import participants

# Due schedules posted per transaction by the sweep (see `run_rituals`).
SCHEDULES_PER_TRANSACTION = 25
MEETINGS = (RitualKind.REVIEW, RitualKind.DEMO)
# An `each` standup is claimed this long before the schedule's time: the earliest zones
# (UTC+14 against UTC-12) are asked up to a day before the schedule's own zone.
EACH_LEAD = timedelta(hours=26)


def lead_of(schedule: RitualSchedule) -> timedelta:
    """How long before its time an occurrence is claimed (and, for meetings, posted)."""
    if schedule.kind in MEETINGS:
        return AGENDA_LEAD
    if schedule.kind == RitualKind.STANDUP and schedule.mode == StandupMode.EACH:
        return EACH_LEAD
    return timedelta(0)


def _claim(session: Session, project: Project, kind: str, at: datetime, zone: str,
           schedule_id: int | None, actor: str, status: str = OccurrenceStatus.OPEN,
           skip_reason: str | None = None) -> RitualOccurrence | None:
    """Insert the occurrence row unless another process already did: the exactly-once claim."""
    new_id = session.execute(
        insert_for(session)(RitualOccurrence).values(
            team_id=project.team_id, project_id=project.id, schedule_id=schedule_id, kind=kind,
            scheduled_for=at, local_date=at.astimezone(ZoneInfo(zone)).date(), timezone=zone,
            status=status, skip_reason=skip_reason, participants=[], created_by=actor,
            created_at=utcnow(), mode=StandupMode.CHANNEL, votes_per_person=3,
            outcome_decisions=[],
        ).on_conflict_do_nothing().returning(RitualOccurrence.id)
    ).scalar()
    return session.get(RitualOccurrence, new_id) if new_id is not None else None


def card_context(session: Session, occurrence: RitualOccurrence) -> dict[str, Any]:
    """What the occurrence's card shows, by kind."""
    context: dict[str, Any] = {"o": occurrence, "project": occurrence.project}
    if occurrence.kind == RitualKind.STANDUP:
        context.update(standups.card_context(session, occurrence))
    elif occurrence.kind == RitualKind.RETRO:
        context.update(retros.card_context(session, occurrence))
    else:
        context.update(reviews.card_context(session, occurrence))
    return context


def render_card(session: Session, occurrence: RitualOccurrence) -> dict[str, Any]:
    template = "ritual/meeting" if occurrence.kind in MEETINGS else f"ritual/{occurrence.kind}"
    return renderer.message(template, **card_context(session, occurrence))


def _post(session: Session, occurrence: RitualOccurrence, schedule: RitualSchedule | None,
          now: datetime, actor: str) -> None:
    """Post the card (or, for an `each` standup, prepare each person's prompt) and set its
    answer window."""
    project = occurrence.project
    window = timedelta(minutes=schedule.answer_window_minutes) if schedule else DEFAULT_WINDOW
    occurrence.participants = participants(session, project, schedule, occurrence.local_date)
    if schedule is not None:
        occurrence.questions = schedule.questions
        occurrence.votes_per_person = schedule.votes_per_person
    if occurrence.kind == RitualKind.STANDUP and schedule is not None and \
            schedule.mode == StandupMode.EACH and occurrence.scheduled_for > now:
        occurrence.mode = StandupMode.EACH
        zones.plan_prompts(session, occurrence, window)
        session.flush()
        record_event(session, actor=actor, action=f"{occurrence.kind}.planned",
                     entity=occurrence, project_id=project.id,
                     after={**occurrence_snapshot(occurrence),
                            "prompts": len(occurrence.prompts)})
        return
    if occurrence.kind in MEETINGS:
        occurrence.posted_at = now
        occurrence.remind_at = occurrence.scheduled_for
        occurrence.closes_at = occurrence.scheduled_for + window
    else:
        occurrence.posted_at = now
        occurrence.closes_at = now + window
    if occurrence.kind == RitualKind.STANDUP:
        occurrence.remind_at = now + window / 2
    elif occurrence.kind == RitualKind.RETRO:
        occurrence.period_start = retros.previous_retro_time(session, occurrence) or \
            occurrence.scheduled_for - DEFAULT_RETRO_PERIOD
    post_card(session, occurrence, actor)


def post_card(session: Session, occurrence: RitualOccurrence, actor: str) -> None:
    session.flush()
    outbox.post_message(session, occurrence.team_id, occurrence.project.channel_id,
                        render_card(session, occurrence), key=card_key(occurrence))
    record_event(session, actor=actor, action=f"{occurrence.kind}.posted", entity=occurrence,
                 project_id=occurrence.project_id, after=occurrence_snapshot(occurrence))


def run_now(session: Session, project: Project, actor: str, kind: str,
            now: datetime | None = None, default_tz: str | None = None) -> RitualOccurrence:
    """Hold the ritual right away (`/standup now`), whatever the schedule."""
    now = (now or utcnow()).replace(microsecond=0)
    schedule = schedule_of(session, project, kind)
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
    cached next fire time, before any query. `checked_until` counts in claim time (the
    occurrence's time minus its lead)."""
    lead = lead_of(schedule)
    upcoming = first_after(schedule.cron, schedule.timezone, schedule.every_weeks,
                           schedule.anchor_week, schedule.checked_until + lead)
    if upcoming is not None and upcoming - lead > now:
        return False
    due = list(occurrences(schedule.cron, schedule.timezone, schedule.every_weeks,
                           schedule.anchor_week, schedule.checked_until + lead, now + lead))
    if not due:
        return False
    project = schedule.project
    skips = {day for day in session.scalars(select(RitualSkip.on_date).where(
        RitualSkip.project_id == project.id, RitualSkip.kind == schedule.kind))}
    for at in due:
        local_day = at.astimezone(ZoneInfo(schedule.timezone)).date()
        # Late is measured from when it should have been posted: a meeting's agenda a day
        # ahead, anything else at its time (an `each` standup's prompts go out after it).
        late = now - (at - lead if schedule.kind in MEETINGS else at)
        reason = MISSED if late > GRACE else HOLIDAY if local_day in skips else None
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
    schedule.checked_until = max(schedule.checked_until, due[-1] - lead)
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
    zones.send_due_prompts(session, now)
    for occurrence in _locked(session, select(RitualOccurrence).where(
            RitualOccurrence.status == OccurrenceStatus.OPEN,
            RitualOccurrence.reminded_at.is_(None),
            RitualOccurrence.remind_at <= now).order_by(RitualOccurrence.id), RitualOccurrence):
        occurrence.reminded_at = now
        if occurrence.kind == RitualKind.STANDUP:
            standups.remind(session, occurrence)
        elif occurrence.kind in MEETINGS:
            reviews.remind(session, occurrence)
    for occurrence in _locked(session, select(RitualOccurrence).where(
            RitualOccurrence.status == OccurrenceStatus.OPEN,
            RitualOccurrence.closes_at <= now).order_by(RitualOccurrence.id), RitualOccurrence):
        close(session, occurrence, now)
    retros.remind_overdue_actions(session, now)
    return False


def close(session: Session, occurrence: RitualOccurrence, now: datetime) -> None:
    """Close the answer window: the summary goes into the thread and the card says closed."""
    occurrence.status = OccurrenceStatus.CLOSED
    occurrence.closed_at = now
    session.flush()
    if occurrence.kind == RitualKind.STANDUP:
        message = standups.summary_message(session, occurrence)
    elif occurrence.kind == RitualKind.RETRO:
        message = retros.summary_message(session, occurrence)
    else:
        message = reviews.outcome_prompt(session, occurrence)
    outbox.post_message(session, occurrence.team_id, occurrence.project.channel_id, message,
                        thread_key=card_key(occurrence))
    refresh_card(session, occurrence)
    record_event(session, actor="scheduler", action=f"{occurrence.kind}.closed",
                 entity=occurrence, project_id=occurrence.project_id,
                 after={**occurrence_snapshot(occurrence), "updates": len(occurrence.updates),
                        "items": len(occurrence.items)})


def refresh_card(session: Session, occurrence: RitualOccurrence) -> None:
    if occurrence.posted_at is None:  # an `each` standup before its first prompt
        return
    outbox.update_message(session, occurrence.team_id, card_key(occurrence),
                          render_card(session, occurrence))
