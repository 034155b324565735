"""Design reviews and sprint demos: an agenda thread a day ahead, a reminder at the start, and
the outcome afterwards, with the decisions logged from it linking back to the review."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot import outbox
from bot.errors import Conflict, InvalidInput
from bot.models import RetroItem, RitualKind, RitualOccurrence, utcnow
from bot.render import renderer
from bot.services import decisions as decision_service
from bot.services.audit import record_event
from bot.services.records import lock
from bot.services.rituals import occurrences as cards
from bot.services.rituals.base import TEXT_LIMIT, card_key, clean, ensure_open

MEETINGS = (RitualKind.REVIEW, RitualKind.DEMO)
NAMES = {RitualKind.REVIEW: "Design review", RitualKind.DEMO: "Sprint demo"}
MAX_DECISIONS = 10
MENTION_FIRST = re.compile(r"^\s*<@[UW][A-Z0-9]+")


def card_context(session: Session, occurrence: RitualOccurrence) -> dict[str, Any]:
    return {"ritual_name": NAMES.get(occurrence.kind, occurrence.kind),
            "agenda": [i for i in occurrence.items if i.kind == "agenda"]}


def _ensure_meeting(occurrence: RitualOccurrence) -> None:
    if occurrence.kind not in MEETINGS:
        raise Conflict("Agenda items and outcomes belong to design reviews and demos.")


def add_agenda_item(session: Session, occurrence: RitualOccurrence, user: str, text: str,
                    *, from_thread: bool = False, now: datetime | None = None) -> RetroItem:
    """An agenda item (the button's form, or a reply in the agenda thread)."""
    _ensure_meeting(occurrence)
    text = clean(text, "text")
    if not text:
        raise InvalidInput("Write the agenda item.", field="text")
    ensure_open(occurrence)
    item = RetroItem(occurrence_id=occurrence.id, project_id=occurrence.project_id,
                     kind="agenda", text=text, state="open", created_by=user,
                     created_at=now or utcnow())
    session.add(item)
    session.flush()
    session.refresh(occurrence, ["items"])
    record_event(session, actor=user, action=f"{occurrence.kind}.agenda_added",
                 entity=occurrence, project_id=occurrence.project_id,
                 after={"text": text, "by": user})
    if not from_thread:  # a reply is already in the thread
        outbox.post_message(session, occurrence.team_id, occurrence.project.channel_id,
                            renderer.message("ritual/agenda_item", i=item),
                            thread_key=card_key(occurrence))
    cards.refresh_card(session, occurrence)
    return item


def agenda_reply(session: Session, occurrence: RitualOccurrence, user: str, text: str,
                 now: datetime) -> RetroItem | None:
    """A top-level reply in the agenda thread before the meeting starts is an agenda item,
    unless it answers someone (starts with a mention)."""
    if occurrence.kind not in MEETINGS or now >= occurrence.scheduled_for or \
            MENTION_FIRST.match(text) or not text.strip():
        return None
    try:
        return add_agenda_item(session, occurrence, user, text[:TEXT_LIMIT], from_thread=True,
                               now=now)
    except Conflict:
        return None


def remind(session: Session, occurrence: RitualOccurrence) -> None:
    """At the start: the meeting and its agenda, in the channel."""
    outbox.post_message(session, occurrence.team_id, occurrence.project.channel_id,
                        renderer.message("ritual/meeting_start", o=occurrence,
                                         **card_context(session, occurrence)))


def outcome_prompt(session: Session, occurrence: RitualOccurrence) -> dict[str, Any]:
    return renderer.message("ritual/outcome_prompt", o=occurrence,
                            ritual_name=NAMES.get(occurrence.kind, occurrence.kind))


def check_outcome(outcome: str, decisions: str) -> tuple[str, list[str]]:
    """The outcome and the decisions' titles; InvalidInput on the field that is wrong."""
    outcome = clean(outcome, "outcome")
    if not outcome:
        raise InvalidInput("Say what came out of it.", field="outcome")
    titles = [" ".join(line.split()) for line in (decisions or "").splitlines()]
    titles = [t.lstrip("-•* ").strip() for t in titles if t.strip("-•* ")]
    if len(titles) > MAX_DECISIONS:
        raise InvalidInput(f"Log at most {MAX_DECISIONS} decisions at once.", field="decisions")
    return outcome, titles


def ensure_no_outcome(occurrence: RitualOccurrence) -> None:
    if occurrence.outcome is not None:
        raise Conflict(f"The outcome of this {occurrence.kind} is already recorded; it is in "
                       f"the thread.")


def record_outcome(session: Session, occurrence: RitualOccurrence, user: str, outcome: str,
                   decisions: str, permalink: str | None = None) -> list[Any]:
    """The outcome of a review or demo, once; each line of `decisions` becomes a decision
    record whose context and link point back to the review."""
    _ensure_meeting(occurrence)
    outcome, titles = check_outcome(outcome, decisions)
    drafts = [decision_service.DecisionDraft(
        title=title, context=f"Decided at the {NAMES[RitualKind(occurrence.kind)].lower()} "
        f"{occurrence.ref} of {occurrence.local_date.isoformat()}.",
        decision=title, status="accepted", deciders=[user], source_permalink=permalink
    ).validated() for title in titles]
    lock(session, occurrence)
    ensure_no_outcome(occurrence)
    logged = [decision_service.log_decision(session, occurrence.project, user, draft)
              for draft in drafts]
    occurrence.outcome, occurrence.outcome_by = outcome, user
    occurrence.outcome_decisions = [d.ref for d in logged]
    session.flush()
    record_event(session, actor=user, action=f"{occurrence.kind}.outcome_recorded",
                 entity=occurrence, project_id=occurrence.project_id,
                 after={"outcome": outcome, "decisions": occurrence.outcome_decisions})
    outbox.post_message(session, occurrence.team_id, occurrence.project.channel_id,
                        renderer.message("ritual/outcome", o=occurrence, decisions=logged,
                                         ritual_name=NAMES[RitualKind(occurrence.kind)]),
                        thread_key=card_key(occurrence))
    cards.refresh_card(session, occurrence)
    return logged
