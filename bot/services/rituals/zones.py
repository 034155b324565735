"""Each person's own time zone (Geekbot's way): `/standup schedule weekdays 09:30 each`.

The standup of a day is claimed a day ahead; each participant gets a prompt at the schedule's
wall-clock time in their own zone (Slack's `users.info` `tz`, cached here for a day and
refreshed on `user_change`), answers in the DM or the form, and each answer is posted into the
day's channel thread. The card goes up with the first prompt; the summary closes the standup
when the last zone's answer window ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import outbox
from bot.models import (
    OccurrenceStatus,
    RitualOccurrence,
    RitualPrompt,
    SlackUserZone,
    StandupMode,
)
from bot.render import renderer
from bot.services import access
from bot.services.rituals import occurrences as cards
from bot.services.rituals import standups
from bot.services.rituals.base import insert_for

CACHE_FOR = timedelta(days=1)


def known_zone(name: str | None) -> str | None:
    """`name` if it is a zone this machine knows (Slack's `tz` is an IANA name)."""
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def stale(session: Session, team_id: str, users: Iterable[str], now: datetime) -> list[str]:
    """Who of `users` has no cached zone, or one older than a day: ask `users.info` for them."""
    wanted = list(dict.fromkeys(users))
    fresh = set(session.scalars(select(SlackUserZone.user_id).where(
        SlackUserZone.team_id == team_id, SlackUserZone.user_id.in_(wanted),
        SlackUserZone.fetched_at > now - CACHE_FOR)))
    return [user for user in wanted if user not in fresh]


def remember(session: Session, team_id: str, zones: Mapping[str, str | None],
             now: datetime) -> None:
    """Cache the zones `users.info` gave (an unknown or missing zone is not cached)."""
    for user, zone in zones.items():
        name = known_zone(zone)
        if name is None:
            continue
        statement = insert_for(session)(SlackUserZone).values(
            team_id=team_id, user_id=user, timezone=name, fetched_at=now)
        session.execute(statement.on_conflict_do_update(
            index_elements=[SlackUserZone.team_id, SlackUserZone.user_id],
            set_={"timezone": name, "fetched_at": now}))


def zones_of(session: Session, team_id: str, users: Iterable[str]) -> dict[str, str]:
    wanted = list(users)
    return dict(session.execute(select(SlackUserZone.user_id, SlackUserZone.timezone).where(
        SlackUserZone.team_id == team_id, SlackUserZone.user_id.in_(wanted))).all())


def plan_prompts(session: Session, occurrence: RitualOccurrence, window: timedelta) -> None:
    """One prompt per participant at the standup's wall-clock time in their zone (the
    schedule's zone for someone whose zone is unknown)."""
    wall = occurrence.scheduled_for.astimezone(ZoneInfo(occurrence.timezone)).replace(tzinfo=None)
    known = zones_of(session, occurrence.team_id, occurrence.participants or [])
    last_close = occurrence.scheduled_for + window
    for user in occurrence.participants or []:
        zone = known.get(user, occurrence.timezone)
        at = wall.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
        session.add(RitualPrompt(occurrence_id=occurrence.id, user_id=user, timezone=zone,
                                 prompt_at=at, closes_at=at + window))
        last_close = max(last_close, at + window)
    occurrence.closes_at = last_close
    occurrence.remind_at = None


def send_due_prompts(session: Session, now: datetime) -> None:
    """DM every prompt that is due; the day's card goes up with the first one."""
    due = session.scalars(select(RitualPrompt).where(
        RitualPrompt.sent_at.is_(None), RitualPrompt.prompt_at <= now)
        .order_by(RitualPrompt.prompt_at, RitualPrompt.id)
        .with_for_update(skip_locked=True, of=RitualPrompt)).all()
    for prompt in due:
        occurrence = prompt.occurrence
        prompt.sent_at = now
        if occurrence.status != OccurrenceStatus.OPEN or now >= prompt.closes_at:
            continue  # closed, or Quorum was down for the whole window: nothing to ask
        if not access.visible_to_user(occurrence.project, prompt.user_id):
            continue  # a private channel's standup asks only its members (docs/access.md)
        if occurrence.posted_at is None:
            occurrence.posted_at = now
            cards.post_card(session, occurrence, "scheduler")
        outbox.post_message(session, occurrence.team_id, prompt.user_id, renderer.message(
            "ritual/prompt", o=occurrence, p=prompt, project=occurrence.project,
            closes_local=prompt.closes_at.astimezone(ZoneInfo(prompt.timezone)),
            questions=standups.questions_of(occurrence)))


def open_prompt(session: Session, team_id: str, user: str) -> RitualOccurrence | None:
    """The `each` standup this person was asked and can still answer in the DM (the latest
    still open: the sweep closes it when the last zone's window ends)."""
    return session.scalars(select(RitualOccurrence).join(RitualPrompt).where(
        RitualOccurrence.team_id == team_id, RitualOccurrence.mode == StandupMode.EACH,
        RitualOccurrence.status == OccurrenceStatus.OPEN, RitualPrompt.user_id == user,
        RitualPrompt.sent_at.is_not(None))
        .order_by(RitualPrompt.prompt_at.desc()).limit(1)).one_or_none()
