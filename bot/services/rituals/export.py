"""`quorum export rituals`: schedules, then occurrences with their updates, items and votes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from bot.models import RetroItem, RitualOccurrence, RitualSchedule
from bot.services.rituals.retros import item_record
from bot.services.rituals.schedules import schedule_snapshot
from bot.services.rituals.standups import questions_of

# Every record has every column (None where it does not apply), so CSV's header, taken from
# the first record, fits schedules and occurrences alike.
COLUMNS = (
    "type", "ref", "project", "channel", "status", "created_at", "created_by", "kind", "mode",
    "when", "cron", "every_weeks", "timezone", "enabled", "answer_window_minutes",
    "anchor_week", "questions", "votes_per_person", "scheduled_for", "local_date",
    "skip_reason", "posted_at", "closed_at", "participants", "prompts", "updates", "items",
    "outcome", "outcome_by", "outcome_decisions",
)


def _shaped(record: dict[str, Any]) -> dict[str, Any]:
    return {column: record.get(column) for column in COLUMNS}


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value else None


def export_records(session: Session) -> Iterator[dict[str, Any]]:
    """One flat-topped record per schedule and per occurrence, in the shape every format
    shares (CSV flattens the nested lists to JSON text)."""
    for schedule in session.scalars(select(RitualSchedule).order_by(RitualSchedule.id)):
        yield _shaped({
            "type": "schedule", "ref": schedule.ref, "project": schedule.project.name,
            "channel": schedule.project.channel_id,
            "status": "enabled" if schedule.enabled else "off",
            "created_at": _iso(schedule.created_at), "created_by": schedule.created_by,
            **schedule_snapshot(schedule),
            "questions": [q.as_dict() for q in questions_of(schedule)],
            "anchor_week": _iso(schedule.anchor_week),
        })
    query = select(RitualOccurrence).options(
        selectinload(RitualOccurrence.updates), selectinload(RitualOccurrence.prompts),
        selectinload(RitualOccurrence.items).selectinload(RetroItem.votes),
    ).order_by(RitualOccurrence.id)
    for occurrence in session.scalars(query):
        questions = questions_of(occurrence)
        yield _shaped({
            "type": "occurrence", "ref": occurrence.ref, "project": occurrence.project.name,
            "channel": occurrence.project.channel_id, "status": occurrence.status,
            "created_at": _iso(occurrence.created_at), "created_by": occurrence.created_by,
            "kind": occurrence.kind, "mode": occurrence.mode,
            "scheduled_for": _iso(occurrence.scheduled_for),
            "local_date": _iso(occurrence.local_date), "timezone": occurrence.timezone,
            "skip_reason": occurrence.skip_reason, "posted_at": _iso(occurrence.posted_at),
            "closed_at": _iso(occurrence.closed_at),
            "participants": list(occurrence.participants or []),
            "questions": [q.as_dict() for q in questions],
            "prompts": [{"user": p.user_id, "timezone": p.timezone,
                         "at": _iso(p.prompt_at), "sent_at": _iso(p.sent_at)}
                        for p in occurrence.prompts],
            "updates": [{"user": u.user_id, "source": u.source, "yesterday": u.yesterday,
                         "today": u.today, "blockers": u.blockers,
                         "answers": [{"question": q.text, "answer": (u.answers or {}).get(q.key,
                                                                                         "")}
                                     for q in questions],
                         "text": u.text, "at": _iso(u.created_at),
                         "updated_at": _iso(u.updated_at)} for u in occurrence.updates],
            "items": [item_record(i) for i in occurrence.items],
            "votes_per_person": occurrence.votes_per_person,
            "outcome": occurrence.outcome, "outcome_by": occurrence.outcome_by,
            "outcome_decisions": list(occurrence.outcome_decisions or []),
        })
