"""Retrospectives as Parabol runs them: items (anonymous if wished), votes, action items.

Each person has N votes per retro (one per item); the summary orders items by votes. Action
items are numbered `A-n` per workspace, have an owner and a due date, appear on the owner's
Home, get the owner a DM once when overdue, and are carried into every later retro's digest
until done (`/retro done A-n` or the button).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

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
    RetroVote,
    Risk,
    RiskAssessment,
    RiskStatus,
    RitualKind,
    RitualOccurrence,
    utcnow,
)
from bot.render import renderer
from bot.services import access, home
from bot.services import promotions as promotion_service
from bot.services.audit import record_event
from bot.services.records import lock
from bot.services.refs import next_number, parse_ref
from bot.services.rituals import occurrences as cards
from bot.services.rituals.base import card_key, clean, ensure_open

ITEM_KINDS = ("went_well", "to_improve", "action")
ANONYMOUS = "anonymous"  # the author stored for an anonymous item: nobody
OVERDUE_BATCH = 200


@dataclass
class ItemDraft:
    kind: str
    text: str
    owner: str | None = None
    due_date: date | str | None = None
    anonymous: bool = False

    def validated(self, today: date) -> ItemDraft:
        if self.kind not in ITEM_KINDS:
            raise InvalidInput(f"`{self.kind}` is not a retro item kind.", field="text")
        text = clean(self.text, "text")
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
        return ItemDraft(self.kind, text, owner, due, self.anonymous)


def item_record(item: RetroItem) -> dict[str, Any]:
    return {"ref": item.ref if item.number else None, "kind": item.kind, "text": item.text,
            "owner": item.owner,
            "due_date": item.due_date.isoformat() if item.due_date else None,
            "state": item.state, "anonymous": item.anonymous, "created_by": item.created_by,
            "created_at": item.created_at.isoformat() if item.created_at else None,
            "done_at": item.done_at.isoformat() if item.done_at else None,
            "done_by": item.done_by, "votes": len(item.votes)}


def add_item(session: Session, occurrence: RitualOccurrence, user: str, draft: ItemDraft,
             now: datetime | None = None) -> RetroItem:
    """A Went well / To improve / Action item, stored and posted in the retro's thread.

    An anonymous item keeps no trace of its author: not in the item, not in the audit log.
    """
    now = now or utcnow()
    draft = draft.validated(now.astimezone(ZoneInfo(occurrence.timezone)).date())
    if occurrence.kind != RitualKind.RETRO:
        raise Conflict("Items belong to retrospectives, not standups.")
    ensure_open(occurrence)
    author = ANONYMOUS if draft.anonymous else user
    item = RetroItem(occurrence_id=occurrence.id, project_id=occurrence.project_id,
                     kind=draft.kind, text=draft.text, owner=draft.owner,
                     due_date=draft.due_date, state="open", created_by=author, created_at=now,
                     anonymous=draft.anonymous)
    if draft.kind == "action":
        item.number = next_number(session, occurrence.team_id, "A")
    session.add(item)
    session.flush()
    session.refresh(occurrence, ["items"])
    record_event(session, actor=author, action="retro.item_added", entity=occurrence,
                 project_id=occurrence.project_id, after=item_record(item))
    outbox.post_message(session, occurrence.team_id, occurrence.project.channel_id,
                        renderer.message("ritual/item", i=item), thread_key=card_key(occurrence))
    cards.refresh_card(session, occurrence)
    _refresh_home(session, occurrence.team_id, item.owner)
    return item


def _refresh_home(session: Session, team_id: str, owner: str | None) -> None:
    """The owner's Home lists their open action items."""
    home.queue_home_refresh(session, team_id, [owner])


def item_message_key(item: RetroItem) -> str:
    return f"retro_item:{item.id}"


def vote(session: Session, item_id: int, user: str, *, cast: bool = True
         ) -> tuple[RetroItem, bool, int]:
    """Cast a vote on an item (or take it back, `cast=False`): the item, False when there was
    nothing to do (already voted, or no vote to take back), and the votes this person has left.
    """
    item = session.get(RetroItem, item_id)
    if item is None or item.kind == "agenda":
        raise NotFound("That retro item no longer exists.")
    occurrence = lock(session, item.occurrence)
    ensure_open(occurrence)
    mine = session.scalars(select(RetroVote).where(
        RetroVote.occurrence_id == occurrence.id, RetroVote.user_id == user)).all()
    existing = next((v for v in mine if v.item_id == item.id), None)
    if cast == (existing is not None):
        return item, False, occurrence.votes_per_person - len(mine)
    if existing is not None:
        session.delete(existing)
        used = len(mine) - 1
    else:
        if len(mine) >= occurrence.votes_per_person:
            raise Conflict(f"You have used your {occurrence.votes_per_person} votes in this "
                           f"retro; take one back (Unvote on that item) to move it.")
        session.add(RetroVote(item_id=item.id, occurrence_id=occurrence.id, user_id=user,
                              created_at=utcnow()))
        used = len(mine) + 1
    session.flush()
    session.refresh(item, ["votes"])
    # Votes are secret like Parabol's: the audit says an item's count changed, not who voted.
    record_event(session, actor=user, action="retro.vote_cast" if cast else "retro.vote_taken",
                 entity=occurrence, project_id=occurrence.project_id,
                 after={"item": item.id, "votes": len(item.votes)})
    cards.refresh_card(session, occurrence)
    return item, True, occurrence.votes_per_person - used


def complete_item(session: Session, item_id: int, user: str,
                  now: datetime | None = None) -> tuple[RetroItem, bool]:
    """Mark an action item done: the item, and False when it already was (a double click,
    even at the same moment, changes nothing)."""
    item = session.get(RetroItem, item_id)
    if item is None or item.kind != "action":
        raise NotFound("That action item no longer exists.")
    if lock(session, item).state == "done":
        return item, False
    item.state, item.done_at, item.done_by = "done", now or utcnow(), user
    session.flush()
    record_event(session, actor=user, action="retro.action_done", entity=item.occurrence,
                 project_id=item.project_id, after=item_record(item))
    _refresh_home(session, item.occurrence.team_id, item.owner)
    return item, True


def find_action(session: Session, team_id: str, ref: str) -> RetroItem:
    """The action item `A-n` of the workspace (`/retro done A-n`; the caller applies the access
    rules: it is changed only from its own project, docs/access.md)."""
    number = parse_ref(ref, "A", "action item")
    item = session.scalars(select(RetroItem).join(RetroItem.occurrence).where(
        RitualOccurrence.team_id == team_id, RetroItem.number == number,
        RetroItem.kind == "action")).one_or_none()
    if item is None:
        raise NotFound(f"There is no action item A-{number}.")
    return item


def open_actions_of(session: Session, team_id: str, user_id: str, limit: int = 10
                    ) -> tuple[list[RetroItem], int]:
    """The person's open action items, the most overdue first, and how many in all."""
    query = select(RetroItem).join(RetroItem.occurrence).where(
        RitualOccurrence.team_id == team_id, RetroItem.kind == "action",
        RetroItem.owner == user_id, RetroItem.state == "open")
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = list(session.scalars(query.order_by(RetroItem.due_date, RetroItem.id).limit(limit)))
    return items, total


def remind_overdue_actions(session: Session, now: datetime) -> None:
    """A DM, once, to the owner of each open action item past its due date (in the retro's
    time zone: due on the 10th is overdue from the 11th there)."""
    candidates = session.scalars(select(RetroItem).where(
        RetroItem.kind == "action", RetroItem.state == "open",
        RetroItem.overdue_notified_at.is_(None),
        RetroItem.due_date < (now + timedelta(days=1)).date())
        .order_by(RetroItem.id).limit(OVERDUE_BATCH).with_for_update(skip_locked=True,
                                                                    of=RetroItem))
    for item in candidates:
        occurrence = item.occurrence
        today = now.astimezone(ZoneInfo(occurrence.timezone)).date()
        if item.due_date is None or item.due_date >= today or not item.owner or \
                not access.visible_to_user(occurrence.project, item.owner):
            continue
        item.overdue_notified_at = now
        outbox.post_message(session, occurrence.team_id, item.owner, renderer.message(
            "ritual/action_overdue", i=item, project=occurrence.project))
        record_event(session, actor="scheduler", action="retro.action_overdue",
                     entity=occurrence, project_id=item.project_id, after=item_record(item))


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
    return promotion_service.promotions_between(session, project, since, until)


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
    # Carried from every earlier retro until done (and once more, as done, after that).
    digest.actions = list(session.scalars(select(RetroItem).where(
        RetroItem.project_id == pid, RetroItem.kind == "action",
        RetroItem.occurrence_id.in_(select(RitualOccurrence.id).where(
            RitualOccurrence.project_id == pid, RitualOccurrence.scheduled_for < until)),
        or_(RetroItem.state == "open", RetroItem.done_at > since))
        .order_by(RetroItem.state.desc(), RetroItem.due_date, RetroItem.id)))
    digest.promotions = promotions_in(session, project, since, until)
    return digest




def card_context(session: Session, occurrence: RitualOccurrence) -> dict[str, Any]:
    return {"count": len(occurrence.items),
            "digest": retro_digest(session, occurrence.project,
                                   occurrence.period_start or occurrence.scheduled_for,
                                   occurrence.scheduled_for, occurrence.local_date)}


@dataclass
class Summary:
    """What a retro's closing message lists: items by votes, action items with owners."""

    went_well: list[RetroItem] = field(default_factory=list)
    to_improve: list[RetroItem] = field(default_factory=list)
    actions: list[RetroItem] = field(default_factory=list)
    voters: int = 0

    @classmethod
    def of(cls, occurrence: RitualOccurrence) -> Summary:
        def by_votes(kind: str) -> list[RetroItem]:
            return sorted((i for i in occurrence.items if i.kind == kind),
                          key=lambda i: (-len(i.votes), i.id))
        voters = {v.user_id for i in occurrence.items for v in i.votes}
        return cls(went_well=by_votes("went_well"), to_improve=by_votes("to_improve"),
                   actions=by_votes("action"), voters=len(voters))


def summary_message(session: Session, occurrence: RitualOccurrence) -> dict[str, Any]:
    return renderer.message("ritual/retro_summary", o=occurrence, s=Summary.of(occurrence))
