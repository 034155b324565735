"""Steps the ritual tests share: schedule, pretend the clock, reply in a thread, read cards."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.models import RitualOccurrence, RitualSchedule, SlackMessage
from bot.render import slack_unescape
from support.quorum_server import QuorumServer
from support.slack_requests import SlackSender
from support.waiting import eventually

CHANNEL = "C0CHURN01"


def text_of(message: dict[str, Any]) -> str:
    return slack_unescape(message.get("text", "") + json.dumps(message.get("blocks", []),
                                                               ensure_ascii=False))


def occurrences(quorum: QuorumServer) -> list[RitualOccurrence]:
    with quorum.runtime.db.session() as session:
        found = list(session.scalars(select(RitualOccurrence).order_by(RitualOccurrence.id)))
        for occurrence in found:
            _ = occurrence.updates, occurrence.items
        return found


def schedule(slack: SlackSender, kind: str, when: str) -> str:
    response = slack.command(f"/{kind}", f"schedule {when}")
    assert response.status_code == 200
    return text_of(response.json())


def set_created(quorum: QuorumServer, at: datetime) -> None:
    """Pretend the schedules were set at `at` (tests run the clock from there)."""
    with quorum.runtime.db.session() as session:
        for row in session.scalars(select(RitualSchedule)):
            row.checked_until = at
            row.anchor_week = (at - timedelta(days=at.weekday())).date()


def roles(slack: SlackSender, *people: str) -> None:
    for person in people:
        slack.command("/quorum", f"role add <@{person}> eng")


def card_ts(quorum: QuorumServer, occurrence_id: int) -> str:
    def posted() -> str | None:
        with quorum.runtime.db.session() as session:
            row = session.get(SlackMessage, f"ritual:{occurrence_id}:card")
            return row.ts if row else None
    return eventually(posted)


def reply(slack: SlackSender, thread_ts: str, user: str, text: str, ts: str,
          event_id: str | None = None, retry: int | None = None, **extra: Any) -> None:
    """A message in the ritual's thread, as Slack's `message` event delivers it."""
    event = {"type": "message", "channel": CHANNEL, "user": user, "text": text, "ts": ts,
             "thread_ts": thread_ts, "channel_type": "channel", **extra}
    assert slack.event(event, event_id=event_id, retry=retry).status_code == 200
